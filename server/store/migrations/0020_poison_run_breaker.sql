ALTER TABLE "runs" ADD COLUMN "abnormal_streak" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "runs" ADD COLUMN "last_abnormal_activation" integer;