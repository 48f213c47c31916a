/**
 * The dashboard in a real browser (issue 10 tests): Playwright driving Debian's Chromium
 * (`scripts/ensure-chromium.sh` installs it through apt when missing and we are root; the test is
 * skipped, with the reason printed, when it cannot be had). Headless, no sandbox, background
 * networking off; every request the page makes must go to the loopback server.
 *
 * Opens the fixture project, checks the loss chart holds the expected number of points per run
 * (all 120 of alpha1; beta22 downsampled by the server to the page's `?points=`), follows a live
 * append, switches runs, plays a results video, and saves screenshots under test-output/ui/.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startUiServer } from '../../src/ui/server.ts';
import { FIXTURE, makeUiFixture } from '../fixtures/ui/make-fixture.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CHROMIUM = process.env.FLEXVID_CHROMIUM ?? '/usr/bin/chromium';
const OUT = path.join(REPO, 'test-output', 'ui');
const POINTS = 500;

/** Make sure Chromium is there (installing it through apt may take minutes once); null or why not. */
function ensureChromium(): string | null {
  if (fs.existsSync(CHROMIUM)) return null;
  const r = spawnSync('bash', [path.join(REPO, 'scripts', 'ensure-chromium.sh')], { encoding: 'utf8', timeout: 15 * 60_000, env: { ...process.env, FLEXVID_CHROMIUM: CHROMIUM } });
  if (r.status === 0 && fs.existsSync(CHROMIUM)) return null;
  return `Chromium not available at ${CHROMIUM} and could not be installed: ${(r.stderr || r.error?.message || '').trim().split('\n').slice(-2).join(' ')}`;
}

test('dashboard in Chromium: chart points, switching runs, video playback, screenshot', { timeout: 20 * 60_000 }, async (t) => {
  const why = ensureChromium();
  if (why) {
    process.stderr.write(`SKIP browser test: ${why}\n`);
    t.skip(why);
    return;
  }
  const { chromium } = await import('playwright-core');
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-ui-browser-'));
  await makeUiFixture(base, { mp4: true });
  const ui = await startUiServer({ root: base, port: 0 });
  const origin = ui.url.replace(/\/$/, '');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--autoplay-policy=no-user-gesture-required'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    const requests: string[] = [];
    const errors: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    fs.mkdirSync(OUT, { recursive: true });

    // 1. One run: the loss chart has all its 120 points (no smoothing: one drawn series per run).
    await page.goto(`${origin}/?points=${POINTS}&poll=400#p=demo&r=alpha1&f=alpha1&s=0`);
    const lossChart = '.chart[data-key="loss"]';
    await page.waitForFunction((sel) => document.querySelector(sel)?.getAttribute('data-points') === '{"alpha1":120}', lossChart, { timeout: 30_000 });
    const drawn = () =>
      page.evaluate(() => {
        const c = (window as any).flexvid.charts.map.get('loss');
        const u = c.u;
        // points per drawn series: values that are not alignment gaps
        return u.series.slice(1).map((s: any, i: number) => ({ label: s.label, n: u.data[i + 1].filter((v: unknown) => v !== undefined && v !== null).length }));
      });
    assert.deepEqual(await drawn(), [{ label: 'alpha1', n: 120 }]);
    // …and it is on the canvas: pixels of the run's colour
    const coloured = await page.evaluate(() => {
      const canvas = document.querySelector('.chart[data-key="loss"] canvas') as HTMLCanvasElement;
      const ctx = canvas.getContext('2d')!;
      const d = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) if (Math.abs(d[i]! - 0x3b) < 40 && Math.abs(d[i + 1]! - 0x6f) < 40 && d[i + 2]! > 0xa0 && d[i + 3]! > 100) n++;
      return n;
    });
    assert.ok(coloured > 100, `loss line drawn (${coloured} pixels of the run colour)`);
    await page.screenshot({ path: path.join(OUT, 'dashboard-alpha1.png') });

    // Live update: the run logs 30 more records; the chart follows without a reload.
    const more = Array.from({ length: 30 }, (_, i) => JSON.stringify({ step: 1200 + i * 10, loss: 0.05, time: new Date().toISOString() })).join('\n') + '\n';
    fs.appendFileSync(path.join(base, 'checkpoints/alpha1/metrics.jsonl'), more);
    await page.waitForFunction((sel) => document.querySelector(sel)?.getAttribute('data-points') === '{"alpha1":150}', lossChart, { timeout: 30_000 });

    // 2. Switch runs: click beta22 (3000 records, 2000 steps after the resume purge) → server-downsampled to POINTS.
    await page.click('#runs li[data-run="beta22"]');
    await page.waitForFunction((sel) => document.querySelector(sel)?.getAttribute('data-points') === `{"beta22":${500}}`, lossChart, { timeout: 30_000 });
    assert.deepEqual(await drawn(), [{ label: 'beta22', n: POINTS }]);
    // overlay a second run with the checkbox
    await page.click('#runs li[data-run="alpha1"] input[type=checkbox]');
    await page.waitForFunction((sel) => {
      const p = document.querySelector(sel)?.getAttribute('data-points');
      return p !== null && p !== undefined && JSON.parse(p).alpha1 === 150 && JSON.parse(p).beta22 === 500;
    }, lossChart, { timeout: 30_000 });
    const both = await drawn();
    assert.deepEqual(both.map((s: any) => s.n).sort((a: number, b: number) => a - b), [150, POINTS]);
    // smoothing adds a smoothed line per run over the raw one
    await page.evaluate(() => {
      const s = document.querySelector('#smooth') as HTMLInputElement;
      s.value = '0.9';
      s.dispatchEvent(new Event('input'));
    });
    await page.waitForFunction(() => (window as any).flexvid.charts.map.get('loss').u?.series.length === 5, null, { timeout: 30_000 });
    const statusText = await page.textContent('#runs li[data-run="beta22"] .badge');
    assert.equal(statusText, 'running');
    assert.equal(await page.textContent('#runs li[data-run="gamma3"] .badge'), 'crashed');
    await page.screenshot({ path: path.join(OUT, 'dashboard-overlay.png') });

    // 3. Previews by step.
    await page.click('.tabs button[data-tab="media"]');
    await page.waitForSelector('#previews .card[data-run="alpha1"] img');
    const previewSrc = await page.getAttribute('#previews .card[data-run="alpha1"] img', 'src');
    assert.equal(previewSrc, '/files/checkpoints/alpha1/samples/preview_001000.gif');

    // 4. Evaluation table, sorted by FVD; pick the alpha1 row and play its video.
    await page.click('.tabs button[data-tab="eval"]');
    await page.waitForSelector('#results tbody tr[data-path]');
    assert.equal(await page.locator('#results tbody tr[data-path]').count(), 3);
    await page.click('#results th[data-col="m:fvd-10-0"]');
    const firstFvd = await page.textContent('#results tbody tr:first-child td:nth-child(9)');
    assert.equal(firstFvd, '99.25', 'ascending FVD puts the best result first');
    await page.click(`#results tbody tr[data-path="${FIXTURE.evalAlpha1}"]`);
    await page.waitForSelector('#result-detail video');
    const played = await page.evaluate(async () => {
      const v = document.querySelector('#result-detail video') as HTMLVideoElement;
      v.muted = true;
      await v.play();
      const t0 = performance.now();
      while (v.currentTime < 0.3 && performance.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 50));
      return { currentTime: v.currentTime, paused: v.paused, error: v.error?.code ?? null, src: v.currentSrc };
    });
    assert.equal(played.error, null);
    assert.ok(played.currentTime >= 0.3, `video plays (currentTime ${played.currentTime})`);
    assert.match(played.src, /\/files\/results\/alpha1\/.*\/videos\/1_1\.mp4$/);
    await page.screenshot({ path: path.join(OUT, 'dashboard-eval.png') });

    // 5. Config diff.
    await page.click('.tabs button[data-tab="config"]');
    await page.waitForSelector('#diff-table tbody tr');
    assert.ok((await page.locator('#diff-table tbody tr').count()) >= 2);

    // Nothing but this server was contacted; no script errors.
    const foreign = requests.filter((u) => !u.startsWith(origin + '/') && !u.startsWith('data:') && !u.startsWith('blob:'));
    assert.deepEqual(foreign, [], 'no external requests');
    assert.deepEqual(errors, [], 'no page errors');
    process.stderr.write(`screenshots in ${OUT}\n`);
  } finally {
    await browser.close();
    await ui.close();
    fs.rmSync(base, { recursive: true, force: true });
  }
});
