// Live events: get a one-time ticket over the session, open the WebSocket, send the ticket
// (and the filter) as the first message. Every value is inserted as text, never as HTML.
"use strict";
(function () {
  const form = document.getElementById("live-filter");
  const status = document.getElementById("live-status");
  const body = document.querySelector("#live-events tbody");
  const csrf = document.querySelector("meta[name=csrf-token]").content;
  let socket = null;
  const MAX_ROWS = 200;

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
  }

  function show(event) {
    const row = document.createElement("tr");
    cell(row, event.time);
    cell(row, event.gateway);
    cell(row, event.device);
    cell(row, event.readings.map((r) => r.n + " = " + r.v + " " + r.u).join(", "));
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
  }

  async function connect() {
    if (socket) socket.close();
    status.textContent = "Connecting…";
    const answer = await fetch("/console/live/ticket", {
      method: "POST", headers: { "X-CSRF-Token": csrf }, credentials: "same-origin",
    });
    if (!answer.ok) { status.textContent = "Not allowed; sign in again."; return; }
    const ticket = (await answer.json()).ticket;
    const filter = {
      ticket: ticket,
      gateway: form.elements.gateway.value.trim(),
      device: form.elements.device.value.trim(),
      topic: form.elements.topic.value.trim(),
    };
    socket = new WebSocket("wss://" + location.host + "/console/live/socket");
    socket.addEventListener("open", () => {
      socket.send(JSON.stringify(filter));
      status.textContent = "Watching.";
      status.dataset.state = "open";
    });
    socket.addEventListener("message", (m) => show(JSON.parse(m.data)));
    socket.addEventListener("close", () => {
      status.textContent = "Disconnected.";
      status.dataset.state = "closed";
    });
  }

  form.addEventListener("submit", (e) => { e.preventDefault(); connect(); });
  connect();
})();
