/** The payload limits and page-size caps test/rpc/validation.test.ts and test/e2e/protocol-errors.test.ts run with. */
export const testLimits = {
  CAIRN_MAX_INPUT_BYTES: "4096",
  CAIRN_MAX_STEP_RESULT_BYTES: "2048",
  CAIRN_MAX_AGENT_RESULT_BYTES: "8192",
  // Far above the request cap the input limit alone used to imply (2 × 4096 + 64 KiB).
  CAIRN_MAX_EVENT_BYTES: "300000",
  CAIRN_MAX_LIST_RUNS_PAGE_SIZE: "3",
  CAIRN_MAX_HISTORY_PAGE_SIZE: "2",
};
