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
import { chainCallback, guard } from "./runflow_dom.js";
import { labelCombos, loadLocale, tr } from "./runflow_i18n.js";
import { PICKERS, SINGLE, TURNAROUND, setupNode } from "./runflow_picker.js";
import { registerSettings, testConnection, toast } from "./runflow_settings.js";
import { COMMAND_TEXT } from "./runflow_strings.js";

const EXTENSION = "Runflow.MultiAngles";

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
