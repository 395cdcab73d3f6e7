CREATE TABLE "schedules" (
	"namespace" text NOT NULL,
	"schedule_id" text NOT NULL,
	"workflow_name" text NOT NULL,
	"input" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"metadata" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"cron" text,
	"timezone" text DEFAULT 'UTC' NOT NULL,
	"every_ms" bigint,
	"anchor_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"jitter_ms" bigint DEFAULT 0 NOT NULL,
	"overlap" text DEFAULT 'skip' NOT NULL,
	"catchup_window_ms" bigint DEFAULT 60000 NOT NULL,
	"paused" boolean DEFAULT false NOT NULL,
	"declared" boolean DEFAULT false NOT NULL,
	"next_fire_at" timestamp (3) with time zone,
	"fire_due_at" timestamp (3) with time zone,
	"last_fire_at" timestamp (3) with time zone,
	"last_run_id" uuid,
	"buffered_fire_at" timestamp (3) with time zone,
	"skipped_fires" bigint DEFAULT 0 NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "schedules_namespace_schedule_id_pk" PRIMARY KEY("namespace","schedule_id"),
	CONSTRAINT "schedules_overlap_check" CHECK ("schedules"."overlap" in ('skip', 'buffer_one', 'allow_all', 'cancel_other')),
	CONSTRAINT "schedules_kind_check" CHECK (("schedules"."cron" is null) <> ("schedules"."every_ms" is null))
);
--> statement-breakpoint
ALTER TABLE "runs" ADD COLUMN "schedule_id" text;--> statement-breakpoint
CREATE INDEX "schedules_due_idx" ON "schedules" USING btree ("fire_due_at") WHERE "schedules"."fire_due_at" is not null;--> statement-breakpoint
CREATE INDEX "schedules_buffered_idx" ON "schedules" USING btree ("buffered_fire_at") WHERE "schedules"."buffered_fire_at" is not null;--> statement-breakpoint
CREATE INDEX "runs_schedule_idx" ON "runs" USING btree ("namespace","schedule_id","created_at" DESC NULLS LAST) WHERE "runs"."schedule_id" is not null;