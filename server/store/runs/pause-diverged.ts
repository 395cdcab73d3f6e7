/**
 * A run whose journal no longer matches its workflow's code (a DeterminismError found while replaying) is
 * paused by the process holding it, not failed: the reason says what diverged, and ResumeRun after a fixed
 * deploy replays it again. Like `pauseHeld`, under the holder's still-valid fence, in one transaction with its
 * `run_paused` entry; if the process dies before this commits, the lease lapses and the next holder replays,
 * diverges the same way and pauses it then.
 */
import type { Db } from "../database.js";
import type { Fence } from "./lease.js";
import { pauseUnderFence } from "./pause.js";

/**
 * False when the fence no longer holds (lease lost, or a cancel came first and wins). `written` are the
 * sequences the diverging activation journaled (operations the changed code started while replaying): replay
 * skips them from now on, so the code that is deployed to fix the divergence replays the journal as it was.
 * A diverging activation never consumes an event or fires a timer (those happen only past the recorded entries).
 */
export async function pauseDiverged(db: Db, fence: Fence, reason: string, written: readonly number[]): Promise<boolean> {
  return pauseUnderFence(db, fence, () => ({
    error: JSON.stringify({ name: "DeterminismError", message: reason }),
    result: written.length > 0 ? { supersedes: [...written] } : null,
  }));
}
