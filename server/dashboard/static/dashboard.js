// kda-mcp dashboard: keeps <main id="live"> current by polling its fragment, localizes times,
// and cancels jobs. Plain JavaScript, no dependencies, nothing loaded from elsewhere.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var status = document.getElementById("live-status");
  if (!live) return;
  var pollMs = parseInt(live.getAttribute("data-poll-ms") || "5000", 10);
  var etag = null;
  var timer = null;
  var pendingCancel = null; // job id whose Cancel button waits for its confirming click
  var pendingTimer = null;

  function localize(root) {
    var times = root.querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var t = times[i];
      var d = new Date(t.getAttribute("datetime"));
      if (!isNaN(d.getTime())) {
        t.title = t.textContent;
        t.textContent = d.toLocaleString();
      }
    }
  }

  function restoreCancel() {
    if (!pendingCancel) return;
    var buttons = live.querySelectorAll('button.cancel[data-job="' + pendingCancel + '"]');
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].classList.add("confirm");
      buttons[i].textContent = "Confirm cancel";
    }
  }

  function setStatus(text, stale) {
    if (!status) return;
    status.textContent = text;
    status.classList.toggle("stale", !!stale);
  }

  function fragmentUrl() {
    var url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    return url.toString();
  }

  function poll() {
    timer = null;
    if (document.hidden) { schedule(); return; }
    var headers = { "X-KDA-UI": "1" };
    if (etag) headers["If-None-Match"] = etag;
    fetch(fragmentUrl(), { headers: headers, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) {
          window.location.href = "/ui/login?next=" + encodeURIComponent(window.location.pathname + window.location.search);
          return null;
        }
        if (response.status === 304) { setStatus("live", false); return null; }
        var tag = response.headers.get("ETag");
        return response.text().then(function (text) {
          if (tag) etag = tag;
          live.innerHTML = text;
          localize(live);
          restoreCancel();
          live.setAttribute("data-updated", String(Date.now()));
          setStatus("live", false);
        });
      })
      .catch(function () { setStatus("offline, retrying", true); })
      .then(schedule, schedule);
  }

  function schedule() {
    if (timer === null) timer = window.setTimeout(poll, pollMs);
  }

  function refreshNow() {
    if (timer !== null) { window.clearTimeout(timer); timer = null; }
    etag = null;
    poll();
  }

  live.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button.cancel") : null;
    if (!button) return;
    var job = button.getAttribute("data-job");
    if (pendingCancel !== job) { // first click arms the button for a few seconds
      pendingCancel = job;
      restoreCancel();
      if (pendingTimer) window.clearTimeout(pendingTimer);
      pendingTimer = window.setTimeout(function () { pendingCancel = null; refreshNow(); }, 4000);
      return;
    }
    pendingCancel = null;
    if (pendingTimer) window.clearTimeout(pendingTimer);
    button.disabled = true;
    button.textContent = "Cancelling";
    fetch("/ui/api/jobs/" + encodeURIComponent(job) + "/cancel", {
      method: "POST", headers: { "X-KDA-UI": "1" }, credentials: "same-origin"
    }).then(function (response) {
      if (!response.ok) return response.json().then(function (body) { window.alert(body.detail || ("cancel failed: " + response.status)); });
    }).catch(function () {}).then(refreshNow);
  });

  document.addEventListener("visibilitychange", function () { if (!document.hidden) refreshNow(); });
  localize(document);
  schedule();
})();
