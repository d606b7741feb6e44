// Entry point: signs in when the deployment asks for it, then wires the submit form, the task
// list, the detail panel, the dashboard, the time-zone switch, the pushed updates (live.js) and
// the poller that keeps them fresh while no push connection is up.

import { initAuth, authEnabled, signIn, signOut, onAuthChange } from "./auth.js";
import { setupSubmitForm } from "./form.js";
import { createTaskList, createPoller, readFilters } from "./list.js";
import { createDetailPanel } from "./detail.js";
import { createDashboard } from "./dashboard.js";
import { createLive, createLiveStatus } from "./live.js";
import { onNavigate } from "./nav.js";
import { project } from "./api.js";
import { debounce, setTaskTypes, setTimeZone, timeZone, toast, zoneName } from "./util.js";

function setupZoneSwitch() {
  const select = document.getElementById("zone-select");
  document.getElementById("zone-local").textContent = `Local (${zoneName("local")})`;
  select.value = timeZone();
  select.addEventListener("change", () => setTimeZone(select.value));
}

function showSignedIn(user) {
  const box = document.getElementById("auth-box");
  const name = document.getElementById("user-name");
  box.hidden = !authEnabled || !user;
  name.textContent = user?.name || "";
}

function showSignIn(message) {
  document.getElementById("main").hidden = true;
  document.getElementById("signin-view").hidden = false;
  const error = document.getElementById("signin-error");
  error.textContent = message || "";
  error.hidden = !message;
  document.getElementById("signin-button").focus();
}

function startApp() {
  document.getElementById("signin-view").hidden = true;
  document.getElementById("main").hidden = false;

  let list = null;
  let poller = null;
  let dashboard = null;

  const detail = createDetailPanel({
    onChanged: (task, { quiet } = {}) => {
      const listed = list.upsert(task);
      if (!quiet) {
        poller.kick();
        dashboard.maybeRefresh();
      } else {
        poller.kick();
      }
      return listed;
    },
    onClosed: () => list.setSelected(null),
  });

  const openTask = (id, known) => {
    list.setSelected(id);
    detail.open(id, known);
  };

  list = createTaskList({
    onOpen: openTask,
    onChange: () => {
      poller?.kick();
      dashboard?.redraw();
    },
  });

  dashboard = createDashboard({
    onOpenTask: (id) => openTask(id),
    onFilterStatus: (status) => {
      list.filterStatus(status);
      document.getElementById("tasks-title").scrollIntoView({ block: "start", behavior: "smooth" });
    },
    currentStatus: () => list.status(),
  });

  const live = createLive();
  const liveStatus = createLiveStatus(document.getElementById("live-status"), live);
  const refreshList = debounce(() => {
    list.refresh().then(() => liveStatus.noteFetched(), () => {});
  }, 300);

  // Pushed changes: rows in place, new tasks into the list, the open task read again.
  live.onTaskChange((pushed, { more }) => {
    // Pushed summaries are read like the API's answers: the declared fields of a task only.
    const tasks = pushed.map((task) => project(task, "TaskView"));
    const statusOf = new Map(list.items().map((t) => [t.id, t.status]));
    const statusChanged = tasks.some((t) => statusOf.get(t.id) !== t.status);
    for (const task of tasks) list.upsert(task);
    // A list filtered by status may have to drop the rows that changed status.
    if (more || (statusChanged && readFilters().status)) refreshList();
    if (tasks.some((t) => t.id === detail.currentId())) detail.refresh({ force: true }).catch(() => {});
    if (statusChanged || more) dashboard.maybeRefresh();
  });
  // After every (re)connect: catch up on what changed while there was no connection.
  live.onConnect(() => {
    refreshList();
    detail.refresh({ force: true }).catch(() => {});
    dashboard.maybeRefresh();
  });
  live.onStateChange(() => poller.kick());

  // Polling while there is no push connection (never configured, or dropped).
  poller = createPoller({
    isActive: () => !live.isLive(),
    tick: async () => {
      const [listChanged, detailChanged] = await Promise.all([
        list.refresh().then((changed) => {
          liveStatus.noteFetched();
          return changed;
        }).catch(() => false),
        detail.refresh().catch(() => false),
      ]);
      if (listChanged) dashboard.maybeRefresh();
      return listChanged || detailChanged;
    },
  });

  const form = setupSubmitForm({
    onSubmitted: (task) => {
      if (task?.id) list.upsert(task);
      poller.kick();
      dashboard.maybeRefresh();
    },
    onTypes: (types) => {
      setTaskTypes(types);
      list.setTypes(types);
      list.redraw();
      detail.redraw();
    },
  });

  form.load();
  list.load().then(() => liveStatus.noteFetched());
  dashboard.load();
  live.start();

  onNavigate((state) => list.setSelected(state.task || null));

  const initial = new URLSearchParams(window.location.search).get("task");
  if (initial) {
    list.setSelected(initial);
    detail.open(initial, null, { fromHistory: true });
  }
}

async function main() {
  setupZoneSwitch();
  document.getElementById("signin-button").addEventListener("click", () => {
    signIn().catch((err) => showSignIn(err.message));
  });
  document.getElementById("signout-button").addEventListener("click", () => signOut());
  onAuthChange((user) => {
    showSignedIn(user);
    if (authEnabled && !user && !document.getElementById("main").hidden) {
      toast("Your session ended. Sign in again.", "error", 0);
      showSignIn("Your session ended. Sign in again.");
    }
  });

  let user = null;
  try {
    user = await initAuth();
  } catch (err) {
    showSignIn(err.message);
    return;
  }
  showSignedIn(user);
  if (authEnabled && !user) {
    showSignIn("");
    return;
  }
  startApp();
}

main();
