// A small markdown renderer that builds DOM nodes and only ever sets text.
//
// What a model writes is never parsed as HTML: every piece of it ends up in a
// text node (createTextNode / textContent), inside elements whose tag names are
// fixed here. `<img onerror=...>` in a reply is shown as those characters.
// Links keep only http:, https: and mailto: targets. Supported: paragraphs,
// ``` fenced code, `inline code`, **bold**, *italic*, ordered and unordered
// lists (one level), # headings and [links](https://...). An unclosed fence or
// marker (a reply still streaming) renders as far as it goes.

const SAFE_SCHEMES = new Set(["http:", "https:", "mailto:"]);
const FENCE = /^ {0,3}(```|~~~)(.*)$/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const BULLET = /^ {0,3}[-*+]\s+(.*)$/;
const NUMBERED = /^ {0,3}(\d{1,9})[.)]\s+(.*)$/;
const LINK = /^\[([^\]\n]*)\]\(\s*([^()\s]*)\s*\)/;

function el(tag, className) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  return node;
}

/** The href if it is http(s) or mailto, else null. */
export function safeHref(raw) {
  try {
    const url = new URL(raw, "http://invalid.invalid/");
    if (!SAFE_SCHEMES.has(url.protocol)) return null;
    // A relative link would point into piagent itself: not what a model means.
    if (url.hostname === "invalid.invalid") return null;
    return url.href;
  } catch {
    return null;
  }
}

function closing(text, marker, from) {
  const end = text.indexOf(marker, from);
  return end > from ? end : -1;
}

function wordChar(ch) {
  return ch !== undefined && /[\p{L}\p{N}]/u.test(ch);
}

/** Append the inline content of `text` to `parent`. */
export function renderInline(text, parent) {
  let plain = "";
  const flush = () => {
    if (plain) parent.append(document.createTextNode(plain));
    plain = "";
  };
  let i = 0;
  while (i < text.length) {
    const ch = text[i];
    if (ch === "`") {
      const end = closing(text, "`", i + 1);
      if (end !== -1) {
        flush();
        const code = el("code");
        code.textContent = text.slice(i + 1, end);
        parent.append(code);
        i = end + 1;
        continue;
      }
    } else if ((ch === "*" || ch === "_") && text[i + 1] === ch) {
      const end = closing(text, ch + ch, i + 2);
      if (end !== -1 && text[i + 2] !== " ") {
        flush();
        const strong = el("strong");
        renderInline(text.slice(i + 2, end), strong);
        parent.append(strong);
        i = end + 2;
        continue;
      }
    } else if (ch === "*" || ch === "_") {
      const end = closing(text, ch, i + 1);
      const opensWord = text[i + 1] !== " " && text[i + 1] !== undefined;
      // snake_case_names are not emphasis.
      const inWord = ch === "_" && (wordChar(text[i - 1]) || wordChar(text[end + 1]));
      if (end !== -1 && opensWord && !inWord && text[end - 1] !== " ") {
        flush();
        const em = el("em");
        renderInline(text.slice(i + 1, end), em);
        parent.append(em);
        i = end + 1;
        continue;
      }
    } else if (ch === "[") {
      const match = LINK.exec(text.slice(i));
      if (match) {
        const href = safeHref(match[2]);
        if (href) {
          flush();
          const a = el("a");
          a.setAttribute("href", href);
          a.setAttribute("rel", "noopener noreferrer");
          a.setAttribute("target", "_blank");
          renderInline(match[1] || href, a);
          parent.append(a);
          i += match[0].length;
          continue;
        }
      }
    }
    plain += ch;
    i += 1;
  }
  flush();
}

function paragraph(lines, parent) {
  const p = el("p");
  renderInline(lines.join("\n"), p);
  parent.append(p);
}

/** Render markdown `text` into a DocumentFragment of safe nodes. */
export function renderMarkdown(text) {
  const out = document.createDocumentFragment();
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  let para = [];
  let list = null;
  const endParagraph = () => {
    if (para.length) paragraph(para, out);
    para = [];
  };
  const endList = () => {
    list = null;
  };
  for (let n = 0; n < lines.length; n += 1) {
    const line = lines[n];
    const fence = FENCE.exec(line);
    if (fence) {
      endParagraph();
      endList();
      const body = [];
      n += 1;
      while (n < lines.length && !lines[n].trimStart().startsWith(fence[1])) {
        body.push(lines[n]);
        n += 1;
      }
      const pre = el("pre");
      const code = el("code");
      const language = fence[2].trim().split(/\s/)[0];
      if (language) code.dataset.language = language;
      code.textContent = body.join("\n");
      pre.append(code);
      out.append(pre);
      continue;
    }
    if (!line.trim()) {
      endParagraph();
      endList();
      continue;
    }
    const heading = HEADING.exec(line);
    if (heading) {
      endParagraph();
      endList();
      const h = el(`h${Math.min(heading[1].length + 2, 6)}`);
      renderInline(heading[2], h);
      out.append(h);
      continue;
    }
    const bullet = BULLET.exec(line);
    const numbered = bullet ? null : NUMBERED.exec(line);
    if (bullet || numbered) {
      endParagraph();
      const tag = bullet ? "ul" : "ol";
      if (!list || list.tagName.toLowerCase() !== tag) {
        list = el(tag);
        if (numbered && numbered[1] !== "1") list.setAttribute("start", String(Number(numbered[1])));
        out.append(list);
      }
      const item = el("li");
      renderInline(bullet ? bullet[1] : numbered[2], item);
      list.append(item);
      continue;
    }
    if (list && /^\s{2,}\S/.test(line)) {
      // A continuation line of the last list item.
      list.lastChild.append(document.createTextNode("\n"));
      renderInline(line.trim(), list.lastChild);
      continue;
    }
    endList();
    para.push(line);
  }
  endParagraph();
  return out;
}
