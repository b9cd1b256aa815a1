/* Ferrodex operator portal: live job updates without page reloads, plus small conveniences.
 *
 * The job list and detail pages carry a data-live-url; this script polls it (JSON from
 * jobs.selectors.job_as_dict, the same serialiser the API and MCP use) and patches the DOM.
 * Polling backs off while nothing is running and stops while the tab is hidden.
 */
(function () {
    "use strict";

    var ACTIVE = { queued: true, running: true };
    var RETRYABLE = { failed: true, cancelled: true };
    var LABELS = { queued: "Queued", running: "Running", complete: "Complete", failed: "Failed", cancelled: "Cancelled" };
    var FAST_MS = 1000;
    var SLOW_MS = 5000;

    // --- formatting ------------------------------------------------------------------------
    function pad(n) { return (n < 10 ? "0" : "") + n; }

    function formatDuration(seconds) {
        if (seconds === null || seconds === undefined || isNaN(seconds)) { return "—"; }
        seconds = Math.max(0, seconds);
        if (seconds < 60) { return seconds < 10 ? seconds.toFixed(1) + " s" : Math.round(seconds) + " s"; }
        var minutes = Math.floor(seconds / 60), secs = Math.floor(seconds % 60);
        if (minutes < 60) { return minutes + "m " + pad(secs) + "s"; }
        var hours = Math.floor(minutes / 60);
        minutes = minutes % 60;
        if (hours < 48) { return hours + "h " + pad(minutes) + "m"; }
        return Math.floor(hours / 24) + "d " + (hours % 24) + "h";
    }

    function formatAge(iso, now) {
        if (!iso) { return "—"; }
        var delta = (now - Date.parse(iso)) / 1000;
        return delta < 5 ? "just now" : formatDuration(delta) + " ago";
    }

    function formatTimestamp(iso) {
        if (!iso) { return "—"; }
        var d = new Date(iso);
        return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " +
            pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds()) + " UTC";
    }

    function formatCount(n) {
        if (n === null || n === undefined || n === "") { return "—"; }
        return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, "\u202f");
    }

    // --- reading job_as_dict tolerantly ----------------------------------------------------
    function pick(obj, names) {
        for (var i = 0; i < names.length; i++) {
            var parts = names[i].split("."), value = obj;
            for (var j = 0; j < parts.length && value !== null && value !== undefined; j++) { value = value[parts[j]]; }
            if (value !== undefined && value !== null) { return value; }
        }
        return null;
    }

    function jobView(job) {
        var started = pick(job, ["started_at", "timestamps.started_at"]);
        var finished = pick(job, ["finished_at", "timestamps.finished_at"]);
        var duration = pick(job, ["duration_s", "duration_seconds", "duration"]);
        if (typeof duration !== "number" && started) {
            duration = ((finished ? Date.parse(finished) : Date.now()) - Date.parse(started)) / 1000;
        }
        return {
            id: String(pick(job, ["id", "job_id"])),
            status: pick(job, ["status"]) || "",
            progress: Number(pick(job, ["progress", "progress.percent"]) || 0),
            stage: pick(job, ["stage", "progress_stage"]) || "",
            message: pick(job, ["stage_message", "message", "progress_message"]) || "",
            cancelRequested: !!pick(job, ["cancel_requested_at", "cancel_requested"]),
            created: pick(job, ["created_at", "timestamps.created_at"]),
            started: started,
            finished: finished,
            heartbeat: pick(job, ["heartbeat_at", "timestamps.heartbeat_at"]),
            duration: typeof duration === "number" ? duration : null,
            counters: job.counters || job,
            errorType: pick(job, ["error_type", "error.type", "error.code"]) || "",
            errorMessage: pick(job, ["error_message", "error.message"]) || (typeof job.error === "string" ? job.error : ""),
            // job_as_dict leaves the traceback out (it can leak paths); the page renders it from the model.
            traceback: pick(job, ["traceback", "error.traceback"]),
            resolvedVersion: pick(job, ["resolved_version"]) || "",
            workerId: pick(job, ["worker_id", "worker"]) || "",
            attempts: pick(job, ["attempts"]),
            retryable: pick(job, ["retryable"]),
            events: job.events || []
        };
    }

    // --- DOM patching ----------------------------------------------------------------------
    function setText(el, text) {
        if (el && el.textContent !== text) { el.textContent = text; }
    }

    function setStatusClass(el, status) {
        el.className = el.className.replace(/\bfx-status-[a-z]+\b/g, "").trim() + " fx-status-" + (status || "none");
    }

    function updateBadge(el, view) {
        setStatusClass(el, view.status);
        var label = LABELS[view.status] || view.status;
        if (view.cancelRequested && ACTIVE[view.status]) { label += " (cancelling)"; }
        setText(el, label);
    }

    function updateProgress(el, view) {
        var p = Math.max(0, Math.min(100, Math.round(view.progress * 10) / 10));
        setStatusClass(el, view.status);
        el.setAttribute("aria-valuenow", String(p));
        el.title = p + "%";
        var bar = el.querySelector(".fx-progress-bar");
        if (bar) { bar.style.width = p + "%"; }
        setText(el.querySelector(".fx-progress-label"), p + "%");
    }

    function applyToFields(root, view, now) {
        var fields = root.querySelectorAll('[data-job-id="' + view.id + '"][data-job-field]');
        for (var i = 0; i < fields.length; i++) {
            var el = fields[i];
            switch (el.getAttribute("data-job-field")) {
                case "status": updateBadge(el, view); break;
                case "progress": updateProgress(el, view); break;
                case "stage_message": setText(el, view.message); break;
                case "duration": setText(el, formatDuration(view.duration)); break;
                case "age": setText(el, formatAge(view.created, now)); break;
            }
        }
    }

    function poll(url, onData, onError) {
        var xhr = new XMLHttpRequest();
        xhr.open("GET", url, true);
        xhr.setRequestHeader("Accept", "application/json");
        xhr.setRequestHeader("X-Requested-With", "XMLHttpRequest");
        xhr.onload = function () {
            if (xhr.status === 200) {
                try { onData(JSON.parse(xhr.responseText)); } catch (e) { onError(e); }
            } else { onError(new Error("HTTP " + xhr.status)); }
        };
        xhr.onerror = function () { onError(new Error("network")); };
        xhr.send();
    }

    function scheduler(tick) {
        var timer = null;
        function schedule(ms) {
            clearTimeout(timer);
            timer = setTimeout(function () {
                if (document.hidden) { schedule(SLOW_MS); return; }
                tick(schedule);
            }, ms);
        }
        document.addEventListener("visibilitychange", function () { if (!document.hidden) { schedule(50); } });
        return schedule;
    }

    // --- job list ----------------------------------------------------------------------------
    function initJobList(container) {
        var url = container.getAttribute("data-live-url");
        var since = container.getAttribute("data-rendered-at");
        var note = document.getElementById("fx-live-note");
        var newJobs = document.getElementById("fx-new-jobs");
        var polls = 0;

        function trackedIds() {
            var ids = {}, els = document.querySelectorAll('#result_list [data-job-field="status"][data-job-id]');
            for (var i = 0; i < els.length; i++) {
                var status = (els[i].className.match(/fx-status-([a-z]+)/) || [])[1];
                if (ACTIVE[status]) { ids[els[i].getAttribute("data-job-id")] = true; }
            }
            return Object.keys(ids);
        }

        function setNote(state, text) {
            if (!note) { return; }
            note.classList.remove("fx-idle", "fx-offline");
            if (state) { note.classList.add(state); }
            setText(note.querySelector(".fx-live-text"), text);
        }

        var schedule = scheduler(function (again) {
            var ids = trackedIds();
            var query = ids.map(function (id) { return "id=" + encodeURIComponent(id); });
            if (since) { query.push("since=" + encodeURIComponent(since)); }
            poll(url + "?" + query.join("&"), function (data) {
                polls += 1;
                document.documentElement.setAttribute("data-fx-polls", String(polls));
                var now = data.server_time ? Date.parse(data.server_time) : Date.now();
                (data.jobs || []).forEach(function (job) { applyToFields(document, jobView(job), now); });
                // Ages of finished rows drift too; refresh them from the clock.
                var ages = document.querySelectorAll('#result_list [data-job-field="age"]');
                for (var i = 0; i < ages.length; i++) { setText(ages[i], formatAge(ages[i].getAttribute("datetime"), now)); }
                if (newJobs && data.new_jobs) {
                    newJobs.hidden = false;
                    newJobs.href = window.location.href;
                    setText(newJobs, data.new_jobs + " new job" + (data.new_jobs === 1 ? "" : "s") + " — show");
                }
                var active = trackedIds().length;
                setNote(active ? "" : "fx-idle", active ? "Live: " + active + " active job" + (active === 1 ? "" : "s") +
                    " updating every second." : "Live: no running jobs on this page; watching for new ones.");
                again(active ? FAST_MS : SLOW_MS);
            }, function () {
                setNote("fx-offline", "Live updates paused: the server did not answer. Retrying…");
                again(SLOW_MS);
            });
        });
        schedule(trackedIds().length ? FAST_MS : SLOW_MS);
    }

    // --- job detail --------------------------------------------------------------------------
    function renderTimeline(list, events) {
        if (!list || !events.length) { return; }
        var signature = events.length + ":" + JSON.stringify(events[events.length - 1]);
        if (list.getAttribute("data-signature") === signature) { return; }
        list.setAttribute("data-signature", signature);
        var fragment = document.createDocumentFragment();
        events.forEach(function (event) {
            var type = pick(event, ["event_type", "type"]) || "";
            var li = document.createElement("li");
            li.className = "fx-event fx-event-" + type.replace(/[^a-z_]/g, "");
            var time = document.createElement("time");
            var created = pick(event, ["created_at", "at", "time"]);
            if (created) {
                time.setAttribute("datetime", created);
                time.textContent = formatTimestamp(created).slice(11, 19);
            }
            var kind = document.createElement("span");
            kind.className = "fx-event-type";
            kind.textContent = type.replace(/_/g, " ");
            var message = document.createElement("span");
            message.className = "fx-event-message";
            message.textContent = pick(event, ["message"]) || "";
            li.appendChild(time);
            li.appendChild(kind);
            li.appendChild(message);
            fragment.appendChild(li);
        });
        list.innerHTML = "";
        list.appendChild(fragment);
    }

    function initJobDetail(root) {
        var url = root.getAttribute("data-live-url");
        var jobId = root.getAttribute("data-job-id");
        var polls = 0;

        function field(name) { return root.querySelector('[data-field="' + name + '"]'); }

        function setTime(name, iso) {
            var el = field(name);
            if (!el) { return; }
            if (iso) { el.setAttribute("datetime", iso); }
            setText(el, formatTimestamp(iso));
        }

        function toggle(selector, show) {
            var els = root.querySelectorAll(selector);
            for (var i = 0; i < els.length; i++) { els[i].hidden = !show; }
        }

        var schedule = scheduler(function (again) {
            poll(url, function (data) {
                polls += 1;
                document.documentElement.setAttribute("data-fx-polls", String(polls));
                var view = jobView(data.job || data);
                view.id = jobId;
                root.setAttribute("data-status", view.status);
                applyToFields(document, view, Date.now());
                var counters = ["items_found", "items_processed", "documents", "chunks", "embeddings", "http_requests"];
                counters.forEach(function (name) {
                    var value = pick(view.counters, [name]);
                    if (value !== null) { setText(field(name), formatCount(value)); }
                });
                if (view.attempts !== null) { setText(field("attempts"), String(view.attempts)); }
                setText(field("stage"), view.stage || "—");
                setText(field("duration"), formatDuration(view.duration));
                setText(field("worker_id"), view.workerId || "—");
                if (view.resolvedVersion) {
                    setText(field("resolved_version"), view.resolvedVersion);
                    setText(field("version"), view.resolvedVersion);
                }
                setTime("started_at", view.started);
                setTime("finished_at", view.finished);
                setTime("heartbeat_at", view.heartbeat);
                setText(field("error_type"), view.errorType);
                setText(field("error_message"), view.errorMessage);
                toggle('[data-show-when="error"]', !!(view.errorMessage || view.errorType));
                if (view.traceback !== null) {
                    setText(field("traceback"), view.traceback);
                    toggle(".fx-traceback", !!view.traceback);
                }
                toggle('[data-show-when="active"]', !!ACTIVE[view.status]);
                toggle('[data-show-when="retryable"]', view.retryable === null ? !!RETRYABLE[view.status] : !!view.retryable);
                toggle('[data-show-when="finished"]', !ACTIVE[view.status]);
                renderTimeline(document.getElementById("fx-timeline"), view.events);
                again(ACTIVE[view.status] ? FAST_MS : SLOW_MS * 2);
            }, function () { again(SLOW_MS); });
        });
        schedule(ACTIVE[root.getAttribute("data-status")] ? FAST_MS : SLOW_MS * 2);
    }

    // --- small things ------------------------------------------------------------------------
    function initCopyButtons() {
        var buttons = document.querySelectorAll("[data-copy-target]");
        Array.prototype.forEach.call(buttons, function (button) {
            button.addEventListener("click", function () {
                var input = document.getElementById(button.getAttribute("data-copy-target"));
                input.select();
                var done = function () { button.textContent = "Copied"; };
                if (navigator.clipboard && window.isSecureContext) {
                    navigator.clipboard.writeText(input.value).then(done, function () { document.execCommand("copy"); done(); });
                } else { document.execCommand("copy"); done(); }
            });
        });
    }

    function init() {
        var list = document.getElementById("fx-job-list");
        if (list) { initJobList(list); }
        var detail = document.getElementById("fx-job-detail");
        if (detail) { initJobDetail(detail); }
        initCopyButtons();
    }

    if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
}());
