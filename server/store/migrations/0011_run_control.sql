ALTER TABLE "runs" DROP CONSTRAINT "runs_status_check";--> statement-breakpoint
ALTER TABLE "runs" ADD COLUMN "pause_requested_at" timestamp (3) with time zone;--> statement-breakpoint
ALTER TABLE "runs" ADD COLUMN "pause_reason" text;--> statement-breakpoint
CREATE INDEX "runs_metadata_idx" ON "runs" USING gin ("metadata" jsonb_path_ops);--> statement-breakpoint
ALTER TABLE "runs" ADD CONSTRAINT "runs_status_check" CHECK ("runs"."status" in ('queued', 'running', 'waiting', 'paused', 'completed', 'failed', 'cancelled'));