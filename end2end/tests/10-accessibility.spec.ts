import AxeBuilder from "@axe-core/playwright";
import { expect, test, type Page } from "@playwright/test";
import { admin, open, signedInRoutes, signIn } from "./helpers";

// Every screen, checked by axe-core (WCAG 2.1 A and AA, and best
// practices): no violation of any impact.

async function violations(page: Page): Promise<string[]> {
  const results = await new AxeBuilder({ page }).analyze();
  return results.violations.map(
    (v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).slice(0, 3).join(" | ")}`,
  );
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
  for (const route of await signedInRoutes(page)) {
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
