ALTER TABLE "journal_entries" ADD COLUMN "target_run_id" uuid;--> statement-breakpoint
ALTER TABLE "runs" ADD COLUMN "detached" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "waits" ADD COLUMN "target_run_id" uuid;--> statement-breakpoint
CREATE INDEX "waits_child_idx" ON "waits" USING btree ("target_run_id") WHERE "waits"."kind" = 'child';