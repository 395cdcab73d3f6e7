CREATE TABLE "events" (
	"id" uuid PRIMARY KEY NOT NULL,
	"position" bigint GENERATED ALWAYS AS IDENTITY (sequence name "events_position_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"namespace" text DEFAULT 'default' NOT NULL,
	"event_type" text NOT NULL,
	"correlation_id" text NOT NULL,
	"payload" jsonb,
	"target_run_id" uuid,
	"idempotency_key" text,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "waits" (
	"run_id" uuid NOT NULL,
	"name" text NOT NULL,
	"namespace" text DEFAULT 'default' NOT NULL,
	"kind" text NOT NULL,
	"event_type" text,
	"correlation_id" text,
	"deadline" timestamp (3) with time zone,
	CONSTRAINT "waits_run_id_name_pk" PRIMARY KEY("run_id","name")
);
--> statement-breakpoint
DROP INDEX "runs_queued_idx";--> statement-breakpoint
ALTER TABLE "runs" ALTER COLUMN "available_at" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "journal_entries" ADD COLUMN "fire_at" timestamp (3) with time zone;--> statement-breakpoint
ALTER TABLE "journal_entries" ADD COLUMN "timeout_at" timestamp (3) with time zone;--> statement-breakpoint
ALTER TABLE "journal_entries" ADD COLUMN "event_type" text;--> statement-breakpoint
ALTER TABLE "journal_entries" ADD COLUMN "correlation_id" text;--> statement-breakpoint
ALTER TABLE "journal_entries" ADD COLUMN "lookback_from" timestamp (3) with time zone;--> statement-breakpoint
ALTER TABLE "journal_entries" ADD COLUMN "event_id" uuid;--> statement-breakpoint
ALTER TABLE "runs" ADD COLUMN "cancel_requested_at" timestamp (3) with time zone;--> statement-breakpoint
ALTER TABLE "runs" ADD COLUMN "cancel_reason" text;--> statement-breakpoint
ALTER TABLE "waits" ADD CONSTRAINT "waits_run_id_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "events_key_idx" ON "events" USING btree ("namespace","event_type","correlation_id","position");--> statement-breakpoint
CREATE UNIQUE INDEX "events_idempotency_key_idx" ON "events" USING btree ("namespace","idempotency_key") WHERE "events"."idempotency_key" is not null;--> statement-breakpoint
CREATE INDEX "events_created_idx" ON "events" USING btree ("created_at");--> statement-breakpoint
CREATE INDEX "waits_event_key_idx" ON "waits" USING btree ("namespace","event_type","correlation_id") WHERE "waits"."kind" = 'event';--> statement-breakpoint
CREATE INDEX "journal_consumed_events_idx" ON "journal_entries" USING btree ("run_id","event_id") WHERE "journal_entries"."event_id" is not null;--> statement-breakpoint
CREATE INDEX "runs_due_idx" ON "runs" USING btree ("available_at") WHERE "runs"."status" in ('queued', 'waiting');