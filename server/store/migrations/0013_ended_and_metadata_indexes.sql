CREATE INDEX "runs_ended_idx" ON "runs" USING btree ("completed_at") WHERE "runs"."status" in ('completed', 'failed', 'cancelled');--> statement-breakpoint
-- Altered rather than rebuilt: no lock on a large runs table. Entries already in the pending list move into the tree at the next vacuum.
ALTER INDEX "runs_metadata_idx" SET (fastupdate = off);
