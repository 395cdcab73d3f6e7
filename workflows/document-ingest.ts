// Ingest a document: fetch it, then extract text, detect language and build
// a thumbnail in parallel (Promise.all over steps runs them concurrently and
// journals each on its own), then index the combined result.
import { defineWorkflow } from "@cairnjs/sdk";
import { z } from "zod";

export default defineWorkflow({
  name: "document_ingest",
  input: z.object({ url: z.string().url(), pages: z.number().int().positive().max(500).default(3) }),
  async handler(input, ctx) {
    const doc = await ctx.step("fetch", () => ({ url: input.url, bytes: 4096 * input.pages, pages: input.pages }));

    const [text, language, thumbnail] = await Promise.all([
      ctx.step("extract-text", async () => {
        await new Promise((resolve) => setTimeout(resolve, 20));
        return { words: doc.pages * 350 };
      }),
      ctx.step("detect-language", () => ({ language: "en", confidence: 0.97 })),
      ctx.step("render-thumbnail", () => ({ width: 256, height: 362, page: 1 })),
    ]);

    const indexed = await ctx.step("index", () => ({
      indexId: `idx_${Buffer.from(input.url).toString("base64url").slice(0, 12)}`,
      terms: Math.round(text.words * 0.4),
    }));

    return { url: input.url, pages: doc.pages, language: language.language, thumbnail, words: text.words, indexId: indexed.indexId };
  },
});
