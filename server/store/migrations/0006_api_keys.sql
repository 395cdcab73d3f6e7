CREATE TABLE "api_keys" (
	"id" text PRIMARY KEY NOT NULL,
	"namespace" text NOT NULL,
	"role" text NOT NULL,
	"secret_hash" text NOT NULL,
	"name" text DEFAULT '' NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"revoked_at" timestamp (3) with time zone,
	"last_used_at" timestamp (3) with time zone,
	CONSTRAINT "api_keys_role_check" CHECK ("api_keys"."role" in ('admin', 'worker', 'client'))
);
--> statement-breakpoint
CREATE INDEX "api_keys_namespace_idx" ON "api_keys" USING btree ("namespace","created_at");