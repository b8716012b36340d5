// Drives Debian's headless Chromium through playwright-core against a page
// that runs docs/api.md's xterm.js example (written by
// tests/browser_terminal.py) with a real `cellbox serve`: types into the
// terminal like a user, resizes it, ends the shell, saves a screenshot, and
// prints one JSON line of results (the Python side makes TAP of it).
//
// usage: node browser_terminal.js URL SCREENSHOT [CHROMIUM]
'use strict';
const { chromium } = require('playwright-core');

const [url, shot, exe] = process.argv.slice(2);
const results = { checks: {}, details: {} };

// the terminal's screen and scrollback as text lines (xterm's buffer API)
const screenText = () => {
  const b = term.buffer.active;
  const lines = [];
  for (let i = 0; i < b.length; i++) lines.push(b.getLine(i).translateToString(true));
  return lines.join('\n');
};

async function main() {
  const browser = await chromium.launch({
    executablePath: exe || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  const logs = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1000, height: 700 } });
    page.on('console', (m) => logs.push(m.type() + ': ' + m.text()));
    page.on('pageerror', (e) => logs.push('pageerror: ' + e.message));
    await page.goto(url, { waitUntil: 'load', timeout: 60000 });

    const waitFor = async (name, pred, arg, timeout = 30000) => {
      try {
        await page.waitForFunction(pred, arg, { timeout, polling: 50 });
        results.checks[name] = true;
      } catch (e) {
        results.checks[name] = false;
        results.details[name] = String(e).split('\n')[0];
      }
    };
    const screen = () => page.evaluate(`(${screenText})()`);

    // the WebSocket opened with the bearer subprotocol, the shell's prompt shows
    await waitFor('connected', () => typeof ws !== 'undefined' && ws.readyState === 1);
    results.details.protocol = await page.evaluate(() => ws.protocol);
    await waitFor('prompt', `(${screenText})().includes('$')`);

    // a user types into the terminal (keyboard events on xterm's textarea)
    await page.click('#terminal');
    await page.keyboard.type('echo $((6*7))');
    await page.keyboard.press('Enter');
    await waitFor('output', `(${screenText})().split('\\n').some((l) => l.trim() === '42')`);

    // resizing the terminal sends {"type":"resize"}: the shell sees the new size
    await page.evaluate(() => term.resize(100, 30));
    await page.keyboard.type('stty size');
    await page.keyboard.press('Enter');
    await waitFor('resize', `(${screenText})().split('\\n').some((l) => l.trim() === '30 100')`);

    // Ctrl-C (typed, not sent by the page's code) interrupts a running command
    await page.keyboard.type('sleep 30; echo not-interrupted');
    await page.keyboard.press('Enter');
    await page.waitForTimeout(300);
    await page.keyboard.press('Control+C');
    await page.keyboard.type('echo after-ctrl-c');
    await page.keyboard.press('Enter');
    await waitFor('ctrl_c', `(${screenText})().split('\\n').some((l) => l.trim() === 'after-ctrl-c')`, undefined, 20000);

    // the shell ends: the example writes the exit code from the exit message
    await page.keyboard.type('exit 3');
    await page.keyboard.press('Enter');
    await waitFor('exit', `(${screenText})().includes('[exited with 3]')`);
    await waitFor('closed', () => ws.readyState === 3);

    results.details.screen = await screen();
    results.checks.not_interrupted_absent = !results.details.screen.includes('\nnot-interrupted');
    await page.screenshot({ path: shot });
  } catch (e) {
    results.error = String(e);
  } finally {
    results.details.logs = logs.slice(-20);
    await browser.close();
  }
  console.log(JSON.stringify(results));
}

main();
