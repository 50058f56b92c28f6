/**
 * The web demo in a real browser: Debian's chromium, driven by playwright-core, loads the site that
 * `dvs demo` serves from the DC's FS (unikernel shape, RDISK on node 1): the page renders with its
 * stylesheet, its script runs (both fetched from the same FS), and a link leads to the directory
 * index NWEB makes.
 */
import { chromium, type Browser } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { runWebDemo } from '../../src/cli/demo-web.js';

describe('the web demo in chromium', () => {
  it('renders the page, applies its stylesheet, runs its script and follows a link', { timeout: 120_000 }, async () => {
    const lines: string[] = [];
    let browser: Browser | undefined;
    await runWebDemo({
      shape: 'unikernel',
      port: 0,
      log: (l) => lines.push(l),
      until: async (url) => {
        browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--headless=new'] });
        try {
          const page = await browser.newPage();
          const res = await page.goto(url);
          expect(res?.status()).toBe(200);
          expect(await page.title()).toBe('DVS web demo');
          await expect.poll(() => page.textContent('#status'), { timeout: 10_000 }).toContain('JavaScript ran');
          // The stylesheet came through too: the heading has its colour.
          expect(await page.evaluate("getComputedStyle(document.querySelector('h1')).color")).toBe('rgb(34, 170, 102)');
          await page.click('a[href="/docs/"]');
          await page.waitForURL(`${url}docs/`);
          expect(await page.textContent('body')).toContain('readme.txt');
        } finally {
          await browser.close();
        }
      },
    });
    expect(lines.join('\n')).toContain('cluster down (3 daemons stopped)');
  });
});
