CREATE TABLE "batch_items" (
	"batch_id" uuid NOT NULL,
	"run_id" uuid NOT NULL,
	"outcome" text DEFAULT 'pending' NOT NULL,
	"error" text,
	CONSTRAINT "batch_items_batch_id_run_id_pk" PRIMARY KEY("batch_id","run_id"),
	CONSTRAINT "batch_items_outcome_check" CHECK ("batch_items"."outcome" in ('pending', 'done', 'skipped', 'failed'))
);
--> statement-breakpoint
CREATE TABLE "batches" (
	"id" uuid PRIMARY KEY NOT NULL,
	"namespace" text NOT NULL,
	"operation" text NOT NULL,
	"filter" jsonb NOT NULL,
	"reason" text DEFAULT '' NOT NULL,
	"status" text DEFAULT 'running' NOT NULL,
	"selected_count" integer DEFAULT 0 NOT NULL,
	"processed_count" integer DEFAULT 0 NOT NULL,
	"skipped_count" integer DEFAULT 0 NOT NULL,
	"failed_count" integer DEFAULT 0 NOT NULL,
	"error" text,
	"lease_owner" text,
	"lease_until" timestamp (3) with time zone,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp (3) with time zone,
	CONSTRAINT "batches_operation_check" CHECK ("batches"."operation" in ('cancel', 'pause', 'resume', 'retry')),
	CONSTRAINT "batches_status_check" CHECK ("batches"."status" in ('running', 'completed', 'failed'))
);
--> statement-breakpoint
ALTER TABLE "batch_items" ADD CONSTRAINT "batch_items_batch_id_batches_id_fk" FOREIGN KEY ("batch_id") REFERENCES "public"."batches"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "batch_items_pending_idx" ON "batch_items" USING btree ("batch_id","run_id") WHERE "batch_items"."outcome" = 'pending';--> statement-breakpoint
CREATE INDEX "batch_items_failed_idx" ON "batch_items" USING btree ("batch_id","run_id") WHERE "batch_items"."outcome" = 'failed';--> statement-breakpoint
CREATE INDEX "batches_running_idx" ON "batches" USING btree ("lease_until") WHERE "batches"."status" = 'running';--> statement-breakpoint
CREATE INDEX "batches_list_idx" ON "batches" USING btree ("namespace","created_at" DESC NULLS LAST,"id" DESC NULLS LAST);