/**
 * Pages and actions register themselves by existing: every file in pages/ exports `page`, every file in
 * actions/ exports `action`. Adding one to the console is adding one file.
 */
import type { ComponentChildren, FunctionComponent } from "preact";
import type { Run, Workflow } from "./api.js";

export interface Page {
  /** Matched against the path; capture groups are handed to the component as `params`. */
  path: RegExp;
  /** In the top bar, in this order (pages without it are reached by links). */
  nav?: { label: string; href: string; order: number };
  component: FunctionComponent<{ params: string[]; query: URLSearchParams }>;
}

export type ActionTarget = { run: Run; workflow?: undefined } | { workflow: Workflow; run?: undefined };

export interface Action {
  /** "run": shown on a run's page; "workflow": shown with each workflow. */
  scope: "run" | "workflow";
  order: number;
  /** Whether it applies to this run now (e.g. cancel only while it has not ended). */
  available?: (target: ActionTarget) => boolean;
  component: FunctionComponent<{ target: ActionTarget; done: (message: ComponentChildren) => void }>;
}

const pageModules = import.meta.glob<{ page: Page }>("./pages/*.tsx", { eager: true });
const actionModules = import.meta.glob<{ action: Action }>("./actions/*.tsx", { eager: true });

export const pages: Page[] = Object.values(pageModules).map((module) => module.page);
export const actions: Action[] = Object.values(actionModules)
  .map((module) => module.action)
  .sort((a, b) => a.order - b.order);
