import AxeBuilder from "@axe-core/playwright";
import { expect, test, type Page } from "@playwright/test";
import { admin, open, signIn } from "./helpers";

// Every screen, checked by axe-core (WCAG 2.1 A and AA, and best
// practices): no violation of any impact.

async function violations(page: Page): Promise<string[]> {
  const results = await new AxeBuilder({ page }).analyze();
  return results.violations.map(
    (v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).slice(0, 3).join(" | ")}`,
  );
}

async function firstLink(page: Page, listing: string, pattern: RegExp): Promise<string> {
  await open(page, listing);
  const hrefs = await page.locator("a[href]").evaluateAll((links) => links.map((a) => a.getAttribute("href") ?? ""));
  const href = hrefs.find((h) => pattern.test(h));
  expect(href, `a link like ${pattern} on ${listing}`).toBeTruthy();
  return href!;
}

test("every screen passes axe with no violations", async ({ page }) => {
  test.setTimeout(180_000);
  // Every screen's violations, gathered, then reported together.
  const found: string[] = [];
  const check = async (what: string) => {
    for (const v of await violations(page)) found.push(`${what}: ${v}`);
  };
  await open(page, "/login");
  await check("/login");
  await signIn(page, admin);
  const segment = await firstLink(page, "/data/segments", /^\/data\/segments\/\d+$/);
  const exportPage = await firstLink(page, "/data/exports", /^\/data\/exports\/\d+$/);
  const run = await firstLink(page, exportPage, /^\/runs\/\d+$/);
  for (const route of [
    "/",
    "/data/segments",
    "/data/segments/new",
    segment,
    "/data/exports",
    "/data/exports/new",
    exportPage,
    `${exportPage}/edit`,
    run,
    "/admin/connections",
    "/admin/connections/new",
    "/admin/connections/new/constant-contact",
    "/admin/users",
    "/admin/system",
    "/admin/audit",
  ]) {
    await open(page, route);
    // Pages that load more after hydration (the export editor) settle first.
    await page.waitForLoadState("networkidle");
    await check(route);
  }
  // The narrow layout, with its menu open.
  await page.setViewportSize({ width: 390, height: 844 });
  await open(page, "/data/exports");
  await page.getByRole("button", { name: "Menu" }).click();
  await check("/data/exports at 390 px, menu open");
  expect(found).toEqual([]);
});
