// Drives Debian's headless Chromium through playwright-core against a
// running Jupyter Notebook server: opens the notebook, waits for the
// cellbox kernel, runs all cells, checks what the page shows, moves the
// widget with the keyboard, saves a screenshot, and prints one JSON line of
// results for tests/browser_notebook.py (which makes TAP of it).
//
// usage: node browser_notebook.js URL SCREENSHOT [CHROMIUM]
'use strict';
const { chromium } = require('playwright-core');

const [url, shot, exe] = process.argv.slice(2);
const results = { checks: {}, details: {} };

async function main() {
  const browser = await chromium.launch({
    executablePath: exe || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 1400 } });
    const logs = [];
    page.on('console', (m) => logs.push(m.type() + ': ' + m.text()));
    page.on('pageerror', (e) => logs.push('pageerror: ' + e.message));
    await page.goto(url, { waitUntil: 'load', timeout: 60000 });
    // the kernel is ready when its kernel_info reply has arrived
    await page.waitForFunction(() => window.Jupyter && Jupyter.notebook && Jupyter.notebook.kernel &&
      Jupyter.notebook.kernel.info_reply && Jupyter.notebook.kernel.info_reply.implementation,
      null, { timeout: 60000 });
    results.details.implementation = await page.evaluate(() => Jupyter.notebook.kernel.info_reply.implementation);
    await page.evaluate(() => Jupyter.notebook.execute_all_cells());

    async function check(name, selector, timeout = 60000) {
      try {
        await page.waitForSelector(selector, { timeout, state: 'visible' });
        results.checks[name] = true;
      } catch (e) {
        results.checks[name] = false;
        results.details[name] = String(e).split('\n')[0];
      }
    }
    await check('text', '.output_area pre:has-text("hello from cellbox")');
    await check('dataframe', '.output_html table.dataframe');
    await check('image', '.output_png img[src^="data:image/png;base64,"]');
    await check('widget', '.widget-slider, .jupyter-widgets.widget-hslider, .widget-hslider');
    // all cells done: every code cell has an execution count
    await page.waitForFunction(() => Jupyter.notebook.get_cells().every(
      (c) => c.cell_type !== 'code' || (c.input_prompt_number && c.input_prompt_number !== '*')),
      null, { timeout: 60000 }).catch(() => {});

    results.details.table = await page.evaluate(() => {
      const t = document.querySelector('.output_html table.dataframe');
      return t ? Array.from(t.querySelectorAll('td')).map((td) => td.textContent) : null;
    });
    results.details.image = await page.evaluate(() => {
      const i = document.querySelector('.output_png img');
      return i ? { w: i.naturalWidth, h: i.naturalHeight, complete: i.complete } : null;
    });
    results.checks.image_decoded = !!(results.details.image && results.details.image.complete &&
      results.details.image.w > 100 && results.details.image.h > 100);

    // the widget round trip: move the slider with the keyboard, then ask the kernel
    try {
      const handle = await page.waitForSelector('.ui-slider-handle', { timeout: 10000 });
      await handle.focus();
      await page.keyboard.press('ArrowRight');
      await page.keyboard.press('ArrowRight');
      await page.waitForTimeout(500);
      await page.evaluate(() => {
        const nb = Jupyter.notebook;
        const cell = nb.insert_cell_at_bottom('code');
        cell.set_text('print("slider value", s.value)');
        cell.execute();
      });
      await page.waitForSelector('.output_area pre:has-text("slider value 7")', { timeout: 20000 });
      results.checks.widget_roundtrip = true;
    } catch (e) {
      results.checks.widget_roundtrip = false;
      results.details.widget_roundtrip = String(e).split('\n')[0];
      results.details.last_output = await page.evaluate(() => {
        const o = document.querySelectorAll('.output_area pre');
        return o.length ? o[o.length - 1].textContent : null;
      });
    }
    await page.screenshot({ path: shot, fullPage: true });
    results.details.console = logs.slice(-15);
  } finally {
    await browser.close();
  }
}

main().then(() => {
  process.stdout.write(JSON.stringify(results) + '\n');
}, (e) => {
  results.error = String(e && e.stack || e);
  process.stdout.write(JSON.stringify(results) + '\n');
  process.exitCode = 1;
});
