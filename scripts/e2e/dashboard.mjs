// Loads the dashboard in headless Chromium and prints what it shows, as JSON, at two moments.
// Usage: node dashboard.mjs URL [WAIT_MS] [SCREENSHOT.png]
import { chromium } from "playwright-core";

const [url, waitMs = "4000", shot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
  const errors = [];
  page.on("pageerror", e => errors.push(String(e)));
  await page.goto(url);
  // the first as_of arrives with the first snapshot
  await page.waitForFunction(() => document.getElementById("as-of").dataset.asOf !== "", null, { timeout: 30000 });
  await page.waitForTimeout(1500);
  const read = () => page.evaluate(() => {
    const t = id => document.getElementById(id).textContent;
    const sessions = [...document.querySelectorAll("#funnel td")].find(td => td.textContent === "sessions");
    return {
      as_of: Number(document.getElementById("as-of").dataset.asOf),
      revenue_total: t("revenue-total"),
      customers_total: t("customers-total"),
      alerts_count: t("alerts-count"),
      quality_total: t("quality-total"),
      sessions: sessions ? sessions.nextElementSibling.textContent : null,
      segments: document.querySelectorAll("#segments tbody tr").length,
      cohort_cells: document.querySelectorAll("#cohorts td[title]").length,
      revenue_bars: document.querySelectorAll("#revenue-chart rect").length,
      status: t("status"),
    };
  });
  const first = await read();
  await page.waitForTimeout(Number(waitMs));
  const second = await read();
  if (shot) await page.screenshot({ path: shot, fullPage: true });
  console.log(JSON.stringify({ first, second, errors }));
} finally {
  await browser.close();
}
