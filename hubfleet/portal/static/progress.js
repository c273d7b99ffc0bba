// Optional: follows a request's progress without reloading; the page works without it (noscript refresh).
(function () {
  "use strict";
  var list = document.getElementById("events");
  if (!list || !window.fetch) { return; }
  var url = list.dataset.url, after = list.dataset.after || "0", state = list.dataset.state;

  function add(event) {
    var item = document.createElement("li"), time = document.createElement("time"), text = document.createElement("span");
    item.className = "event event-" + event.kind;
    time.textContent = event.at;
    text.textContent = event.message;  // text, never HTML: messages come from hosts and users
    item.appendChild(time); item.appendChild(document.createTextNode(" ")); item.appendChild(text);
    list.appendChild(item);
  }

  function poll() {
    fetch(url + "?after=" + encodeURIComponent(after), {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.ok ? response.json() : Promise.reject(response.status); })
      .then(function (data) {
        data.events.forEach(function (event) { add(event); after = String(event.id); });
        if (data.state !== state) { window.location.reload(); return; }
        window.setTimeout(poll, 1500);
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }
  window.setTimeout(poll, 1000);
})();
