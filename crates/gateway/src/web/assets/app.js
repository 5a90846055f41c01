// Airlock web UI: the exec/attach recording player. Served as /static/app.js under a CSP that
// allows no inline script: everything is wired here with addEventListener, and text only
// ever reaches the page through textContent (never innerHTML).
//
// Each <div class="player" data-source="ID"> reads its recording from the JSON in
// <script type="application/json" id="ID">: {"width", "height", "events": [[seconds, code, text]]}
// with code "o" (stdout/stderr), "i" (stdin, not shown) or "r" (resize). Output goes through a
// minimal terminal: \r, \n, backspace and tabs move the cursor; ANSI escape sequences are
// dropped, except that "erase in line" and "clear screen" are honoured.
'use strict';

(function () {
  // Longest pause played back, seconds (like asciinema's idle limit).
  const IDLE_LIMIT = 2;

  function Terminal() {
    this.lines = [''];
    this.row = 0;
    this.col = 0;
    this.esc = null; // null, or the escape sequence read so far
  }

  Terminal.prototype.put = function (ch) {
    let line = this.lines[this.row];
    if (line.length < this.col) line += ' '.repeat(this.col - line.length);
    this.lines[this.row] = line.slice(0, this.col) + ch + line.slice(this.col + 1);
    this.col += 1;
  };

  Terminal.prototype.csi = function (seq) {
    const final = seq[seq.length - 1];
    const arg = seq.slice(2, -1);
    if (final === 'K') {
      // Erase in line: 0 (default) from the cursor to the end.
      if (arg === '' || arg === '0') this.lines[this.row] = this.lines[this.row].slice(0, this.col);
      else if (arg === '2') this.lines[this.row] = '';
    } else if (final === 'J' && (arg === '2' || arg === '3')) {
      this.lines = [''];
      this.row = 0;
      this.col = 0;
    } else if (final === 'H' && arg === '') {
      this.row = 0;
      this.col = 0;
    }
  };

  Terminal.prototype.write = function (text) {
    for (const ch of text) {
      if (this.esc !== null) {
        this.esc += ch;
        const s = this.esc;
        const code = ch.charCodeAt(0);
        if (s.length === 2 && ch !== '[' && ch !== ']') {
          this.esc = null; // two-character escape: ESC c, ESC =, ...
        } else if (s[1] === '[' && s.length > 2 && code >= 0x40 && code <= 0x7e) {
          this.csi(s);
          this.esc = null;
        } else if (s[1] === ']' && (ch === '\x07' || s.endsWith('\x1b\\'))) {
          this.esc = null; // OSC (window title ...)
        } else if (s.length > 256) {
          this.esc = null;
        }
        continue;
      }
      switch (ch) {
        case '\x1b': this.esc = ch; break;
        case '\r': this.col = 0; break;
        case '\n':
          this.row += 1;
          this.col = 0;
          if (this.row >= this.lines.length) this.lines.push('');
          break;
        case '\b': if (this.col > 0) this.col -= 1; break;
        case '\t': this.col = (Math.floor(this.col / 8) + 1) * 8; break;
        case '\x07': break;
        default:
          if (ch >= ' ' || ch > '\x7f') this.put(ch);
      }
    }
  };

  Terminal.prototype.text = function () {
    return this.lines.join('\n');
  };

  function Player(root) {
    const source = document.getElementById(root.dataset.source);
    this.events = [];
    try {
      const rec = JSON.parse(source ? source.textContent : '{}');
      this.events = (rec.events || []).filter((e) => e[1] === 'o');
    } catch (err) {
      this.events = [];
    }
    this.screen = root.querySelector('.screen');
    this.clock = root.querySelector('.clock');
    this.button = root.querySelector('.play');
    this.speedSelect = root.querySelector('.speed');
    this.timer = null;
    this.reset();
    this.button.addEventListener('click', () => (this.timer ? this.pause() : this.play()));
    root.querySelector('.restart').addEventListener('click', () => {
      this.pause();
      this.reset();
      this.play();
    });
    root.dataset.state = 'ready';
  }

  Player.prototype.reset = function () {
    this.term = new Terminal();
    this.next = 0;
    this.at = 0;
    this.render();
  };

  Player.prototype.render = function () {
    this.screen.textContent = this.term.text();
    this.clock.textContent = `${this.at.toFixed(1)} s`;
  };

  Player.prototype.play = function () {
    if (this.next >= this.events.length) this.reset();
    this.button.textContent = 'Pause';
    this.screen.parentElement.dataset.state = 'playing';
    this.step();
  };

  Player.prototype.pause = function () {
    clearTimeout(this.timer);
    this.timer = null;
    this.button.textContent = 'Play';
    this.screen.parentElement.dataset.state = 'paused';
  };

  // Writes everything that is due, then waits (scaled by the speed, pauses capped at
  // IDLE_LIMIT) for the next event. Renders once per batch, not per character.
  Player.prototype.step = function () {
    const speed = Number(this.speedSelect.value);
    while (this.next < this.events.length) {
      const [t, , text] = this.events[this.next];
      const wait = Math.min(t - this.at, IDLE_LIMIT);
      if (speed > 0 && wait > 0.001) {
        this.render();
        this.timer = setTimeout(() => {
          this.at = t;
          this.step();
        }, (wait * 1000) / speed);
        return;
      }
      this.at = Math.max(this.at, t);
      this.term.write(text);
      this.next += 1;
    }
    this.render();
    this.timer = null;
    this.button.textContent = 'Play';
    this.screen.parentElement.dataset.state = 'ended';
  };

  document.querySelectorAll('.player').forEach((el) => new Player(el));
}());
