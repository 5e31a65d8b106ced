// Chat mode: a conversation kept in the generator, turn after turn. With the cache reused, a turn
// prefills only its own tokens (the previous turns are in the cache already); recomputed from
// scratch, it prefills the whole conversation again. Each turn's row says which, how many tokens
// the prefill computed and took from the cache, and the time to its first token.

import { fmtMs } from "./format.js";

const $ = (id) => document.getElementById(id);

const state = {
  turns: [], // { id, message, reply, reuse, prefilled, reused, ttftMs, tokens, stopReason, el }
  current: null, // the turn in progress
  fresh: true, // the next turn starts a new conversation (the sequence was reset or used elsewhere)
  conversation: 0, // the current conversation's number
  available: false,
  nextId: 1,
};

let ctx = null; // { send, runOptions, setActivity, showError, clearError, isIdle, paintMs }
let paintTimer = null; // the streaming reply is painted at most every ctx.paintMs (app.js's PAINT_MS)

function addBubble(role, text) {
  const div = document.createElement("div");
  div.className = `chat-msg ${role}`;
  const who = document.createElement("span");
  who.className = "chat-who";
  who.textContent = role === "user" ? "you" : "model";
  const body = document.createElement("span");
  body.className = "chat-text";
  body.textContent = text;
  div.append(who, body);
  $("chat-log").append(div);
  $("chat-log").scrollTop = $("chat-log").scrollHeight;
  return body;
}

function addDivider(text) {
  const p = document.createElement("p");
  p.className = "chat-divider small muted";
  p.textContent = text;
  $("chat-log").append(p);
}

function renderTurns() {
  const body = $("chat-turns");
  if (!state.turns.length) {
    body.innerHTML = `<tr class="empty"><td colspan="5" class="muted">No turns yet.</td></tr>`;
    return;
  }
  body.replaceChildren(
    ...state.turns.map((t) => {
      const tr = document.createElement("tr");
      const done = t.prefilled != null;
      const cells = [
        `turn ${t.number}`,
        (t.reuse ? "cache reused" : "recomputed from scratch") + (t.stopReason === "stopped" ? ", reply stopped" : ""),
        done ? String(t.prefilled) : "…",
        done ? String(t.reused) : "…",
        done ? fmtMs(t.ttftMs) : "…",
      ];
      for (const text of cells) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      }
      return tr;
    }),
  );
  const last = [...state.turns].reverse().find((t) => t.prefilled != null);
  let note = "";
  if (last?.reuse && last.reused > 0) {
    note = `Turn ${last.number} computed ${last.prefilled} tokens and took ${last.reused} from the cache; ` +
      `from scratch it would compute all ${last.prefilled + last.reused}. Tick “recompute from scratch” to measure that path.`;
  } else if (last && !last.reuse) {
    note = `Turn ${last.number} recomputed the whole conversation: ${last.prefilled} tokens before its first new one.`;
  }
  $("chat-note").textContent = note;
}

function send(event) {
  event.preventDefault();
  if (!state.available || !ctx.isIdle()) return;
  const message = $("chat-message").value.trim();
  const maxTokens = Number($("chat-max-tokens").value);
  if (!message) {
    ctx.showError("Could not chat: type a message first.");
    return;
  }
  if (!Number.isInteger(maxTokens) || maxTokens < 1 || maxTokens > 512) {
    ctx.showError("Could not chat: max tokens must be a whole number from 1 to 512.");
    return;
  }
  ctx.clearError();
  const reuse = !$("chat-recompute").checked;
  if (state.fresh) state.conversation += 1;
  const conversation = state.conversation;
  const turn = {
    id: state.nextId++,
    conversation,
    number: state.turns.filter((t) => t.conversation === conversation).length + 1,
    message,
    reply: "",
    reuse,
    prefilled: null,
    reused: null,
    ttftMs: null,
    tokens: 0,
    stopReason: null,
  };
  addBubble("user", message);
  turn.el = addBubble("assistant", "");
  state.turns.push(turn);
  state.current = turn;
  $("chat-message").value = "";
  ctx.setActivity("chat");
  const run = { ...ctx.runOptions(), maxTokens };
  delete run.chat;
  ctx.send({ type: "chat", turnId: turn.id, message, reuse, fresh: state.fresh, run });
  state.fresh = false;
  renderTurns();
}

function paintReply(turn) {
  clearTimeout(paintTimer);
  paintTimer = null;
  turn.el.textContent = turn.reply;
  $("chat-log").scrollTop = $("chat-log").scrollHeight;
}

/** Handles the worker's chat messages; true if the message was one. */
export function onChatMessage(msg) {
  const turn = state.turns.find((t) => t.id === msg.turnId);
  switch (msg.type) {
    case "chatToken":
      if (turn) {
        turn.reply += msg.event.text;
        paintTimer ??= setTimeout(() => paintReply(turn), ctx.paintMs);
      }
      return true;
    case "chatDone":
      if (turn) {
        Object.assign(turn, msg.result);
        turn.reply = msg.result.text;
        paintReply(turn);
      }
      state.current = null;
      renderTurns();
      return true;
    default:
      return false;
  }
}

/** The turn failed (the page's error box says why): the conversation starts afresh next time. */
export function chatFailed() {
  if (!state.current) return;
  paintReply(state.current);
  state.current.el.closest(".chat-msg")?.classList.add("failed");
  state.turns = state.turns.filter((t) => t !== state.current);
  state.current = null;
  state.fresh = true;
  renderTurns();
}

/** The sequence was reset or used by another run: the next message starts a new conversation. */
export function chatSequenceChanged() {
  if (!state.fresh && state.turns.length) addDivider("The sequence was changed outside the chat: the next message starts a new conversation.");
  state.fresh = true;
}

/**
 * A model was loaded: chat needs its chat template. `chat` is true for an instruct model the
 * page knows, false for one it knows has none (a base model), undefined for the user's own.
 */
export function setChatModel(model) {
  $("chat-log").replaceChildren();
  state.turns = [];
  state.current = null;
  state.fresh = true;
  state.conversation = 0;
  state.available = Boolean(model) && model.chat !== false;
  const why = $("chat-unavailable");
  if (!model) why.textContent = "Load a model first.";
  else if (model.chat === false) {
    why.textContent = `${model.label} has no chat template (a base model, random weights, or HF files given without their tokenizer_config.json): chat mode needs an instruct model such as SmolLM2-135M-Instruct.`;
  } else why.textContent = "";
  why.hidden = !why.textContent;
  renderTurns();
}

/** Enables the form when a chat model is loaded and the worker is idle. */
export function setChatEnabled(idle) {
  const on = idle && state.available;
  for (const id of ["chat-message", "chat-send", "chat-recompute", "chat-max-tokens", "chat-reset"]) $(id).disabled = !on;
}

/** Every turn's figures, for the end-to-end test. */
export function chatSnapshot() {
  return state.turns.map(({ el, ...t }) => ({ ...t }));
}

export function mountChat(context) {
  ctx = context;
  $("chat-form").addEventListener("submit", send);
  $("chat-message").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) send(e);
  });
  $("chat-reset").addEventListener("click", () => {
    if (!ctx.isIdle()) return;
    ctx.clearError();
    state.fresh = true;
    addDivider("Conversation reset.");
    ctx.send({ type: "chatReset" });
  });
  setChatModel(null);
}
