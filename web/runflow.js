// Runflow Multi Angles: frontend extension (entry point).
//
// * Camera-pose picker (an SVG inside a DOM widget) on both nodes; it only drives the nodes' real widgets, so the
//   nodes work the same without this file, headless, and in frontends that do not render custom DOM widgets.
// * A cost line under the picker: live estimate, then what the last run spent (ui.runflow).
// * Settings → Runflow → Connection: the API key and webhook secret go straight to the pack's server route;
//   nothing secret is ever written to ComfyUI's settings, the workflow or the prompt.
//
// Every hook is wrapped: a frontend API difference must never break the graph. Errors are logged with "[Runflow]".

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { chainCallback, guard } from "./runflow_dom.js";
import { labelCombos, loadLocale, tr } from "./runflow_i18n.js";
import { PICKERS, SINGLE, TURNAROUND, setupNode } from "./runflow_picker.js";
import { registerSettings, testConnection, toast } from "./runflow_settings.js";
import { COMMAND_TEXT } from "./runflow_strings.js";

const EXTENSION = "Runflow.MultiAngles";
const PACK_NODES = new Set([SINGLE, TURNAROUND, "RunflowContactSheet"]);

/**
 * A Runflow node failed (or was cancelled while runs may still bill): put the pack's own message first, where the
 * user looks: a toast (frontend 1.5x only shows a generic "node threw an error" toast) and the node's picker line.
 */
function onExecutionError(event) {
  const detail = event?.detail ?? {};
  if (!PACK_NODES.has(detail.node_type)) return;
  const message = String(detail.exception_message ?? "").trim();
  if (!message) return;
  toast("error", message);
  const node = app.graph?.getNodeById?.(detail.node_id) ?? app.graph?.getNodeById?.(Number(detail.node_id));
  node?.__runflowPicker?.showError(message);
}

app.registerExtension({
  name: EXTENSION,

  commands: [
    {
      id: "Runflow.MultiAngles.TestConnection",
      label: COMMAND_TEXT["Runflow.MultiAngles.TestConnection"].label,
      icon: "pi pi-wifi",
      function: async () => {
        const result = await testConnection();
        toast(result?.ok ? "success" : "error", String(result?.message ?? tr("settings.testFailed")));
      },
    },
  ],
  menuCommands: [{ path: ["Extensions", "Runflow"], commands: ["Runflow.MultiAngles.TestConnection"] }],

  async setup() {
    guard("registering settings", () => registerSettings(EXTENSION));
    guard("listening for errors", () => api.addEventListener("execution_error", onExecutionError));
    const changed = await loadLocale();
    if (changed) {
      for (const picker of PICKERS) {
        guard("relabelling", () => {
          labelCombos(picker.node);
          picker.render();
        });
      }
    }
  },

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== SINGLE && nodeData?.name !== TURNAROUND) return;
    const multi = nodeData.name === TURNAROUND;
    const proto = nodeType.prototype;

    chainCallback(proto, "onNodeCreated", function () {
      setupNode(this, multi);
    });
    chainCallback(proto, "onConfigure", function () {
      const picker = this.__runflowPicker;
      if (!picker) return;
      for (const name of picker.watchedWidgets()) picker.wrapCallback(name);
      picker.scheduleRender();
    });
    chainCallback(proto, "onExecuted", function (output) {
      this.__runflowPicker?.onExecuted(output);
    });
    chainCallback(proto, "onRemoved", function () {
      this.__runflowPicker?.dispose();
    });
  },
});
