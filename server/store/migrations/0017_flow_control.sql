ALTER TABLE "runs" ADD COLUMN "priority" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "runs" ADD COLUMN "concurrency_key" text;--> statement-breakpoint
ALTER TABLE "runs" ADD COLUMN "concurrency_limit" integer;--> statement-breakpoint
ALTER TABLE "runs" ADD COLUMN "rate_key" text;--> statement-breakpoint
ALTER TABLE "runs" ADD COLUMN "rate_limit" integer;--> statement-breakpoint
ALTER TABLE "runs" ADD COLUMN "rate_period_ms" integer;--> statement-breakpoint
ALTER TABLE "runs" ADD COLUMN "debounce_key" text;--> statement-breakpoint
ALTER TABLE "runs" ADD COLUMN "namespace_max_running" integer;--> statement-breakpoint
ALTER TABLE "runs" ADD COLUMN "held_by" text;--> statement-breakpoint
CREATE INDEX "runs_due_priority_idx" ON "runs" USING btree ("priority" DESC NULLS LAST,"available_at") WHERE "runs"."status" in ('queued', 'waiting') and "runs"."priority" <> 0;--> statement-breakpoint
CREATE INDEX "runs_concurrency_running_idx" ON "runs" USING btree ("namespace","workflow_name","concurrency_key") WHERE "runs"."status" = 'running' and "runs"."concurrency_limit" is not null;--> statement-breakpoint
CREATE INDEX "runs_namespace_running_idx" ON "runs" USING btree ("namespace") WHERE "runs"."status" = 'running' and "runs"."namespace_max_running" is not null;--> statement-breakpoint
CREATE INDEX "runs_rate_starts_idx" ON "runs" USING btree ("namespace","workflow_name","rate_key","started_at") WHERE "runs"."rate_limit" is not null and "runs"."started_at" is not null;--> statement-breakpoint
CREATE INDEX "runs_held_idx" ON "runs" USING btree ("namespace","workflow_name","concurrency_key","priority" DESC NULLS LAST,"created_at") WHERE "runs"."held_by" = 'concurrency' and "runs"."available_at" is null;--> statement-breakpoint
CREATE INDEX "runs_namespace_held_idx" ON "runs" USING btree ("namespace","priority" DESC NULLS LAST,"created_at") WHERE "runs"."held_by" = 'namespace' and "runs"."available_at" is null;--> statement-breakpoint
CREATE UNIQUE INDEX "runs_debounce_idx" ON "runs" USING btree ("namespace","workflow_name","debounce_key") WHERE "runs"."debounce_key" is not null and "runs"."status" = 'queued' and "runs"."started_at" is null;