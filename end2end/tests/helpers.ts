import { expect, type Page } from "@playwright/test";

export const admin = { email: "admin@example.com", password: "admin password 1" };
export const contributor = { email: "carol@example.com", password: "carol password 1" };

/** Clicks before hydration do nothing: wait for the app to take over. */
export async function open(page: Page, path: string) {
  await page.goto(path);
  await page.locator("body[data-hydrated]").waitFor();
}

export async function signIn(page: Page, who: { email: string; password: string }) {
  await open(page, "/login");
  await page.getByLabel("Email").fill(who.email);
  await page.getByLabel("Password").fill(who.password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("heading", { name: "Overview" })).toBeVisible();
}

export async function signOut(page: Page) {
  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
}

export async function shot(page: Page, name: string) {
  await page.screenshot({ path: `test-results/screenshots/${name}.png`, fullPage: true });
}

export const sandboxURL = `http://127.0.0.1:${process.env.SANDBOX_PORT ?? "3030"}`;

/** An administrator adds a Constant Contact connection through the sandbox's sign-in page. */
export async function addConnection(page: Page, name: string) {
  await open(page, "/admin/connections/new/constant-contact");
  await page.getByLabel("Display name").fill(name);
  await page.getByLabel("Administrators and contributors").check();
  await page.getByLabel("I agree").check();
  await page.getByRole("button", { name: "Connect" }).click();
  await page.getByRole("button", { name: "Authenticate with Constant Contact" }).click();
  await expect(page.getByRole("heading", { name: "Sign in and allow access" })).toBeVisible();
  await page.getByLabel("Username").fill("demo@example.com");
  await page.getByLabel("Password").fill("demo-password");
  await page.getByRole("button", { name: "Allow" }).click();
  await expect(page.getByText("✓ Authorized with Constant Contact")).toBeVisible();
  await page.locator("body[data-hydrated]").waitFor();
  await page.getByRole("button", { name: "Add yourself as export user" }).click();
  await expect(page.getByText("Export user:")).toBeVisible();
  await page.getByRole("button", { name: "Save" }).click();
  await expect(page.getByRole("row").filter({ hasText: name }).getByText("Authorized", { exact: true })).toBeVisible();
}

/** The first address on `listing` that matches `pattern`. */
export async function firstLink(page: Page, listing: string, pattern: RegExp): Promise<string> {
  await open(page, listing);
  const hrefs = await page.locator("a[href]").evaluateAll((links) => links.map((a) => a.getAttribute("href") ?? ""));
  const href = hrefs.find((h) => pattern.test(h));
  expect(href, `a link like ${pattern} on ${listing}`).toBeTruthy();
  return href!;
}

/** Every screen a signed-in administrator can open, with a segment, an
 * export, its edit form and a run found in the installation. */
export async function signedInRoutes(page: Page): Promise<string[]> {
  const segment = await firstLink(page, "/data/segments", /^\/data\/segments\/\d+$/);
  const exportPage = await firstLink(page, "/data/exports", /^\/data\/exports\/\d+$/);
  const run = await firstLink(page, exportPage, /^\/runs\/\d+$/);
  return [
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
    "/admin/api-tokens",
    "/admin/audit",
  ];
}
