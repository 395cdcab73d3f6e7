/** `cairn workflows list`. */
import { type Command, ExitCode, jsonDocument } from "../command.js";
import { table } from "../format.js";

export const workflowsList: Command = {
  name: "workflows list",
  summary: "list the workflows the server loaded",
  usage: "",
  options: {},
  positionals: [],
  async run(context) {
    const workflows = await context.client().listWorkflows();
    if (context.json) {
      context.io.out(jsonDocument(workflows));
      return ExitCode.ok;
    }
    if (workflows.length === 0) {
      context.io.out("no workflows loaded (the server's WORKFLOW_DIRS holds none; its log says why)");
      return ExitCode.ok;
    }
    const sorted = [...workflows].sort((a, b) => a.name.localeCompare(b.name));
    context.io.out(
      table(
        ["NAME", "INPUT SCHEMA", "SOURCE"],
        sorted.map((workflow) => [workflow.name, workflow.hasInputSchema ? (workflow.inputSchemaVendor ?? "yes") : "-", workflow.sourceFile]),
      ),
    );
    return ExitCode.ok;
  },
};
