// A small Markdown renderer that builds DOM nodes and sets only text: model output and stored
// history can never become HTML (no HTML parsing anywhere), whatever they contain.

function el(tag, text) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  return node;
}

const INLINE = /(`[^`\n]+`)|(\*\*[^*\n]+\*\*)|(\*[^*\s][^*\n]*\*)|(\[[^\]\n]+\]\([^)\s]+\))/g;
const SAFE_URL = /^(https?:|mailto:)/i;

function inline(text, into) {
  let last = 0;
  for (const match of text.matchAll(INLINE)) {
    if (match.index > last) lines(text.slice(last, match.index), into);
    const token = match[0];
    if (match[1]) into.append(el("code", token.slice(1, -1)));
    else if (match[2]) into.append(el("strong", token.slice(2, -2)));
    else if (match[3]) into.append(el("em", token.slice(1, -1)));
    else {
      const close = token.indexOf("](");
      const label = token.slice(1, close);
      const href = token.slice(close + 2, -1);
      if (SAFE_URL.test(href)) {
        const a = el("a", label);
        a.href = href;
        a.rel = "noopener noreferrer";
        a.target = "_blank";
        into.append(a);
      } else {
        lines(token, into);
      }
    }
    last = match.index + token.length;
  }
  if (last < text.length) lines(text.slice(last), into);
}

function lines(text, into) {
  text.split("\n").forEach((part, i) => {
    if (i) into.append(el("br"));
    if (part) into.append(document.createTextNode(part));
  });
}

/** Render `text` as Markdown into `into` (replacing what it held). */
export function renderMarkdown(text, into) {
  const out = [];
  const all = String(text).split("\n");
  let paragraph = [];
  let list = null;
  const flush = () => {
    if (paragraph.length) {
      const p = el("p");
      inline(paragraph.join("\n"), p);
      out.push(p);
      paragraph = [];
    }
  };
  for (let i = 0; i < all.length; ) {
    const line = all[i];
    const fence = /^\s*```\s*([\w+#.-]*)\s*$/.exec(line);
    if (fence) {
      flush();
      list = null;
      const code = [];
      for (i += 1; i < all.length && !/^\s*```\s*$/.test(all[i]); i += 1) code.push(all[i]);
      i += 1;
      const pre = el("pre");
      const block = el("code", code.join("\n"));
      if (fence[1]) block.dataset.lang = fence[1];
      pre.append(block);
      out.push(pre);
      continue;
    }
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    const item = /^\s*(?:[-*+]|(\d+)[.)])\s+(.*)$/.exec(line);
    if (heading) {
      flush();
      list = null;
      const h = el("h" + Math.min(6, heading[1].length + 2));
      inline(heading[2], h);
      out.push(h);
    } else if (item) {
      flush();
      const tag = item[1] ? "OL" : "UL";
      if (!list || list.tagName !== tag) {
        list = el(tag.toLowerCase());
        out.push(list);
      }
      const li = el("li");
      inline(item[2], li);
      list.append(li);
    } else if (!line.trim()) {
      flush();
      list = null;
    } else {
      list = null;
      paragraph.push(line);
    }
    i += 1;
  }
  flush();
  into.replaceChildren(...out);
}
