// The playground: chat with streamed tokens (server-sent events read from fetch), or similarity and
// classification boxes for encoders and classifiers. Plain browser JavaScript, no libraries.
"use strict";

const $ = (id) => document.getElementById(id);
let info = null;
let history = [];      // the conversation as OpenAI messages
let controller = null; // aborts the request in flight (the Stop button)

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function showError(message) { $("error").textContent = message || ""; }

async function post(path, body, signal) {
  const response = await fetch(path, { method: "POST", headers: headers(), body: JSON.stringify(body), signal });
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try { message = (await response.json()).error.message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = "message " + role;
  div.textContent = text;
  $("messages").appendChild(div);
  $("messages").scrollTop = $("messages").scrollHeight;
  return div;
}

function sampling() {
  const body = {
    temperature: parseFloat($("temperature").value),
    top_p: parseFloat($("top-p").value),
    max_tokens: parseInt($("max-tokens").value, 10),
    stream: true,
  };
  const seed = $("seed").value.trim();
  if (seed !== "") body.seed = parseInt(seed, 10);
  return body;
}

// Reads "data: {...}" events from a streamed response; calls onText with each new piece of text.
async function readEvents(response, onText) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (!event.startsWith("data: ")) continue;
      const data = event.slice(6);
      if (data === "[DONE]") return;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      const choice = chunk.choices && chunk.choices[0];
      if (!choice) continue;
      const text = choice.delta ? choice.delta.content : choice.text;
      if (text) onText(text);
      if (choice.finish_reason) $("chat-status").textContent = "finished: " + choice.finish_reason +
        (chunk.usage ? " · " + chunk.usage.completion_tokens + " tokens" : "");
    }
  }
}

async function send(event) {
  event.preventDefault();
  const text = $("prompt").value;
  if (!text.trim() || controller) return;
  showError("");
  $("prompt").value = "";
  addMessage("user", text);
  const reply = addMessage("assistant", "");
  let path, body;
  if (info.chat) {
    history.push({ role: "user", content: text });
    const system = $("system").value.trim();
    const messages = system ? [{ role: "system", content: system }, ...history] : history;
    path = "/v1/chat/completions";
    body = { ...sampling(), messages };
  } else {
    path = "/v1/completions";
    body = { ...sampling(), prompt: text };
  }
  controller = new AbortController();
  $("send").disabled = true;
  $("stop").disabled = false;
  $("chat-status").textContent = "generating…";
  try {
    const response = await post(path, body, controller.signal);
    await readEvents(response, (piece) => {
      reply.textContent += piece;
      $("messages").scrollTop = $("messages").scrollHeight;
    });
  } catch (err) {
    if (err.name === "AbortError") $("chat-status").textContent = "stopped";
    else showError(err.message);
  } finally {
    if (info.chat) history.push({ role: "assistant", content: reply.textContent });
    controller = null;
    $("send").disabled = false;
    $("stop").disabled = true;
  }
}

async function compare() {
  showError("");
  try {
    const response = await post("/v1/embeddings", { input: [$("text-a").value, $("text-b").value] });
    const [a, b] = (await response.json()).data.map((d) => d.embedding);
    const cosine = a.reduce((sum, x, i) => sum + x * b[i], 0); // the vectors are L2-normalised
    $("similarity").textContent = "cosine similarity " + cosine.toFixed(4);
  } catch (err) { showError(err.message); }
}

async function classify() {
  showError("");
  try {
    const response = await post("/v1/classify", { input: $("classify-text").value });
    const row = (await response.json()).data[0];
    const out = $("probabilities");
    out.textContent = "";
    for (const [label, p] of Object.entries(row.probabilities)) {
      const bar = document.createElement("div");
      bar.className = "bar";
      const name = document.createElement("span");
      name.textContent = label + (label === row.label ? " ✓" : "");
      const fill = document.createElement("div");
      fill.className = "fill";
      fill.style.width = (100 * p).toFixed(1) + "%";
      const value = document.createElement("span");
      value.textContent = p.toFixed(3);
      bar.append(name, fill, value);
      out.appendChild(bar);
    }
  } catch (err) { showError(err.message); }
}

async function start() {
  try {
    const response = await fetch("/api/info", { headers: headers() });
    if (!response.ok) throw new Error((await response.json()).error.message);
    info = await response.json();
  } catch (err) {
    showError("cannot read /api/info: " + err.message + " (enter the API key and reload)");
    return;
  }
  $("model-name").textContent = info.model;
  $("runs-link").hidden = !info.runs;
  if (info.kind === "generate") {
    $("chat-panel").hidden = false;
    $("max-tokens").value = Math.min(256, info.limits.max_tokens);
    $("mode-hint").textContent = info.chat ? "Chat template: the model's own." : "No chat template: text completion.";
  } else if (info.kind === "embed") {
    $("embed-panel").hidden = false;
  } else {
    $("classify-panel").hidden = false;
  }
}

$("chat-form").addEventListener("submit", send);
$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) send(e);
});
$("stop").addEventListener("click", () => controller && controller.abort());
$("clear").addEventListener("click", () => { history = []; $("messages").textContent = ""; });
$("compare").addEventListener("click", compare);
$("classify").addEventListener("click", classify);
$("api-key").addEventListener("change", start);
start();
