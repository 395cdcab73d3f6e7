CREATE TABLE "agent_turns" (
	"id" uuid PRIMARY KEY NOT NULL,
	"namespace" text DEFAULT 'default' NOT NULL,
	"run_id" uuid NOT NULL,
	"workflow_name" text NOT NULL,
	"name" text NOT NULL,
	"agent" text NOT NULL,
	"text" text NOT NULL,
	"params" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"attempt" integer DEFAULT 0 NOT NULL,
	"lease_token" uuid,
	"worker_id" text,
	"lease_expires_at" timestamp (3) with time zone,
	"result" jsonb,
	"error" jsonb,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"completed_at" timestamp (3) with time zone,
	CONSTRAINT "agent_turns_status_check" CHECK ("agent_turns"."status" in ('pending', 'leased', 'completed', 'failed', 'cancelled'))
);
--> statement-breakpoint
ALTER TABLE "journal_entries" ADD COLUMN "target_run_id" uuid;--> statement-breakpoint
ALTER TABLE "journal_entries" ADD COLUMN "target_turn_id" uuid;--> statement-breakpoint
ALTER TABLE "runs" ADD COLUMN "detached" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "waits" ADD COLUMN "target_run_id" uuid;--> statement-breakpoint
ALTER TABLE "waits" ADD COLUMN "target_turn_id" uuid;--> statement-breakpoint
ALTER TABLE "agent_turns" ADD CONSTRAINT "agent_turns_run_id_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "agent_turns_pending_idx" ON "agent_turns" USING btree ("namespace","agent","created_at") WHERE "agent_turns"."status" = 'pending';--> statement-breakpoint
CREATE INDEX "agent_turns_lease_idx" ON "agent_turns" USING btree ("lease_expires_at") WHERE "agent_turns"."status" = 'leased';--> statement-breakpoint
CREATE INDEX "agent_turns_run_idx" ON "agent_turns" USING btree ("run_id");--> statement-breakpoint
CREATE INDEX "waits_child_idx" ON "waits" USING btree ("target_run_id") WHERE "waits"."kind" = 'child';--> statement-breakpoint
CREATE INDEX "waits_agent_idx" ON "waits" USING btree ("target_turn_id") WHERE "waits"."kind" = 'agent';