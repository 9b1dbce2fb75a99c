// English UI text of the Runflow Multi Angles extension: pure data, no side effects.
//
// Translations live in locales/<lang>/main.json under "runflowMultiAngles" (same keys, same {placeholders}) and
// locales/<lang>/settings.json (setting names/tooltips, ids with "." -> "_"); tests/web checks they stay in sync.
// Avoid the characters { } @ | in text outside placeholders: ComfyUI's vue-i18n treats them as message syntax.

import { ANGLE_SHORT, SHOT_SHORT, VIEW_SHORT } from "./pose_math.js";

export const EN = Object.freeze({
  picker: {
    aria: "Camera pose: click a view, an angle or a distance ring",
    orbitHint:
      "Seen from above. The subject (centre) faces the front view camera at the bottom; R and L are the subject's right and left sides.",
    arcHint: "Seen from the side: camera height (angle).",
    subjectRight: "R",
    subjectLeft: "L",
    all: "all 8",
    allHint: "Select all 8 views",
    keepOne: "Keep at least one view selected",
    linked: "{name} comes from a link; change it upstream",
    toggleHint: "click to add or remove",
    reroll: "Re-roll {view}",
    rerollAgain: "{view}: re-rolled (take {take}); click for another take",
    rerollHint:
      "A new take of this view: one {price} run when queued; the other views stay the cached results for $0.00. Set take back to 0 for the original render (still cached).",
    views: { ...VIEW_SHORT },
    angles: { ...ANGLE_SHORT },
    shots: { ...SHOT_SHORT },
  },
  cost: {
    single: "{price} per run per image",
    singleHint: "One run per image in the input batch. Re-queueing unchanged inputs (same seed) costs $0.00.",
    turnaroundHint: "One run per selected view, for each input image. Cached views cost $0.00.",
    runs: "{runs} runs × {price} = {total}",
    noViews: "No views selected",
    linkedViews: "{price} per view (the views come from a link)",
    unknown: "Unknown view(s): {names} (the node will not run)",
    reroll: "re-roll {views}: {line}",
    rerollHint: "The other {n} selected views come from the cache for $0.00 when they were rendered before.",
  },
  last: {
    prefix: "Last run:",
    spent: "spent {amount}",
    fromCache: "{n} from cache",
    session: "session total {amount}",
  },
  settings: {
    save: "Save",
    remove: "Remove",
    reset: "Reset",
    clear: "Clear",
    test: "Test connection",
    testing: "Testing…",
    saving: "Saving…",
    loading: "Checking…",
    pasteFirst: "Paste a value first.",
    keyPlaceholder: "rf_live_…",
    keyConfigured: "Configured (…{last4}, from {source})",
    keyConfiguredNoHint: "Configured (from {source})",
    keyMissing: "Not configured: paste your key here or set RUNFLOW_API_KEY",
    keyEnvWins: "The RUNFLOW_API_KEY environment variable wins over a key saved here.",
    sourceEnv: "env",
    sourceConfig: "config",
    sourceDefault: "default",
    urlStatus: "Using {url} (from {source})",
    urlEnvWins: "The RUNFLOW_API_URL environment variable wins over a URL saved here.",
    publicSet: "Callbacks go to {url}/runflow/callback",
    publicNeedsSecret: "Callbacks also need a webhook secret; until then runs are polled.",
    publicMissing: "Not set: results are polled (fine for local use)",
    secretConfigured: "Configured",
    secretMissing: "Not configured",
    savedTo: "Saved on the ComfyUI server in {path}",
    routesMissing:
      "The Runflow server routes did not answer ({detail}). Restart ComfyUI after installing or updating the pack.",
    testOk: "Connected",
    testFailed: "Connection failed",
    cacheInfo: "{entries} results · {size} MiB · {path}",
    cacheClear: "Clear cache",
    cacheCleared: "Removed {removed} cached results",
    ledgerInfo: "Today {today} ({todayRuns} runs) · this month {month} ({monthRuns} runs) · {hits} from cache this month",
    ledgerTitle: "What Runflow billed, from its run records. Cache hits cost $0.00.",
    ledgerUnreported: "{n} runs this month had no reported cost",
    ledgerNotRunflow: "{n} runs this month went to a sandbox or another API URL (not real money)",
    ledgerExport: "Export CSV",
  },
});

/** Settings → Runflow → Connection; registered as Runflow.<key> (see registerSettings in runflow.js). */
export const SETTING_TEXT = Object.freeze({
  ApiKey: {
    name: "API key",
    tooltip:
      "Your Runflow API key (rf_live_…). Saved on the ComfyUI server in the pack's config file, never in ComfyUI's settings, workflows or prompts. The RUNFLOW_API_KEY environment variable takes precedence.",
    sortOrder: 50,
  },
  ApiUrl: {
    name: "API URL",
    tooltip:
      "Runflow API base URL (default https://api.runflow.io). Point it at a sandbox to test without spending. The RUNFLOW_API_URL environment variable takes precedence.",
    sortOrder: 40,
  },
  PublicUrl: {
    name: "Public URL (callbacks)",
    tooltip:
      "Optional. The address where Runflow can reach this ComfyUI server, e.g. https://my-box.example.com. With a webhook secret, Runflow calls back when a run finishes instead of waiting for the next poll. Leave empty on a local machine.",
    sortOrder: 30,
  },
  WebhookSecret: {
    name: "Webhook secret",
    tooltip:
      "Optional. The signing secret Runflow uses for callbacks (Runflow-Signature). Callbacks without a valid signature are rejected. Write-only: it is never shown again.",
    sortOrder: 20,
  },
  TestConnection: {
    name: "Test connection",
    tooltip: "Checks that the API URL answers and that the key is accepted. Costs nothing.",
    sortOrder: 10,
  },
  Ledger: {
    name: "Spending (receipts)",
    tooltip:
      "What Runflow billed for this pack's runs, from its run records: today and this month, with cache hits at $0.00. Export every receipt as CSV.",
    sortOrder: 6,
  },
  ResultCache: {
    name: "Result cache",
    tooltip:
      "Finished renders are kept on disk so re-queueing the same inputs costs $0.00, even after a restart. Clearing it means the next queue of those inputs pays again.",
    sortOrder: 5,
  },
});

/** Command palette / menu entry (commands.json key: id with "." -> "_"). */
export const COMMAND_TEXT = Object.freeze({
  "Runflow.MultiAngles.TestConnection": { label: "Test Runflow connection" },
});
