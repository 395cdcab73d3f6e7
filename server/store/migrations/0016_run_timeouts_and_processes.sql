CREATE TABLE "processes" (
	"id" text PRIMARY KEY NOT NULL,
	"host" text NOT NULL,
	"pid" integer NOT NULL,
	"workflows" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"version" text DEFAULT '' NOT NULL,
	"lease_ms" integer NOT NULL,
	"started_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"last_seen_at" timestamp (3) with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "runs" ADD COLUMN "abnormal_activations" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "runs" ADD COLUMN "timeout_at" timestamp (3) with time zone;--> statement-breakpoint
CREATE INDEX "processes_last_seen_idx" ON "processes" USING btree ("last_seen_at");--> statement-breakpoint
CREATE INDEX "runs_timeout_idx" ON "runs" USING btree ("timeout_at") WHERE "runs"."timeout_at" is not null and "runs"."status" in ('queued', 'running', 'waiting', 'paused');