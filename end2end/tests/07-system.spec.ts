import { expect, test } from "@playwright/test";
import { admin, contributor, open, shot, signIn, signOut } from "./helpers";

test("an administrator sets the scheduled refresh and sees the next runs", async ({ page }) => {
  await signIn(page, admin);
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "System" }).click();
  await expect(page.getByRole("heading", { name: "System" })).toBeVisible();
  await page.locator("body[data-hydrated]").waitFor();
  // The default: every night.
  await expect(page.getByLabel("Every day")).toBeChecked();
  await expect(page.getByTestId("next-runs").getByRole("listitem")).toHaveCount(5);

  await page.getByLabel("On some days of the week").check();
  await page.getByLabel("Times").fill("06:30, 18:00");
  await page.getByLabel("Monday").check();
  await page.getByLabel("Thursday").check();
  await page.getByLabel("Time zone").fill("Mars/Olympus");
  await page.getByRole("button", { name: "Save schedule" }).click();
  await expect(page.getByText("Choose a time zone by its name")).toBeVisible();
  await page.getByLabel("Time zone").fill("Europe/Budapest");
  await page.getByRole("button", { name: "Save schedule" }).click();
  await expect(page.getByText("Schedule saved.")).toBeVisible();
  const next = page.getByTestId("next-runs").getByRole("listitem");
  await expect(next).toHaveCount(5);
  await expect(next.first()).toContainText(/(06:30|18:00) CES?T/);
  await shot(page, "07-system");

  // The exports list shows when the next refresh is.
  await open(page, "/data/exports");
  await expect(page.getByText(/Next: .*(06:30|18:00) CES?T/).first()).toBeVisible();
  await signOut(page);
});

test("a contributor has no System page", async ({ page }) => {
  await signIn(page, contributor);
  await expect(page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "System" })).toHaveCount(0);
  await open(page, "/admin/system");
  await expect(page.getByRole("heading", { name: "No access" })).toBeVisible();
  const refused = await page.request.post("/api/refresh_now");
  expect(refused.status()).toBe(403);
  await signOut(page);
});

test("an administrator makes an API token, another tool uses it, and it is revoked", async ({ page }) => {
  await signIn(page, admin);
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "API tokens" }).click();
  await expect(page.getByRole("heading", { name: "API tokens", level: 1 })).toBeVisible();
  await page.locator("body[data-hydrated]").waitFor();
  const doc = page.getByRole("link", { name: "OpenAPI document" });
  await expect(doc).toHaveAttribute("href", "/api/v1/openapi.json");
  expect((await page.request.get("/api/v1/openapi.json")).status()).toBe(200);

  // No name: said by the field.
  await page.getByRole("button", { name: "Create token" }).click();
  await expect(page.locator("#field-name-error")).toHaveText("Enter a name for the token.");
  await expect(page.getByLabel("Name")).toHaveAttribute("aria-invalid", "true");

  await page.getByLabel("Name").fill("Nightly pipeline");
  await page.getByLabel("Role", { exact: true }).selectOption({ label: "Contributor" });
  await page.getByRole("button", { name: "Create token" }).click();
  await expect(page.getByRole("status")).toContainText("it will not be shown again");
  const secret = await page.getByLabel("Token", { exact: true }).inputValue();
  expect(secret).toMatch(/^sxp_/);
  const row = page.getByRole("row").filter({ hasText: "Nightly pipeline" });
  await expect(row).toContainText("Contributor");
  await expect(row).toContainText("Never");
  await shot(page, "07-api-tokens");

  // Another tool lists the exports with it; a session cookie alone is not enough.
  const auth = { Authorization: `Bearer ${secret}` };
  const listed = await page.request.get("/api/v1/exports", { headers: auth });
  expect(listed.status()).toBe(200);
  expect((await listed.json()).items.length).toBeGreaterThan(0);
  expect((await page.request.get("/api/v1/exports")).status()).toBe(401);
  await page.reload();
  await expect(page.getByRole("row").filter({ hasText: "Nightly pipeline" })).not.toContainText("Never");

  await page.locator("body[data-hydrated]").waitFor();
  await page.getByRole("button", { name: "Revoke Nightly pipeline" }).click();
  await expect(page.getByRole("row").filter({ hasText: "Nightly pipeline" })).toContainText("Revoked");
  const refused = await page.request.get("/api/v1/exports", { headers: auth });
  expect(refused.status()).toBe(401);
  expect((await refused.json()).error.code).toBe("unauthorized");
  await signOut(page);
});

test("a contributor has no API tokens page and cannot make tokens", async ({ page }) => {
  await signIn(page, contributor);
  await expect(page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "API tokens" })).toHaveCount(0);
  await open(page, "/admin/api-tokens");
  await expect(page.getByRole("heading", { name: "No access" })).toBeVisible();
  const refused = await page.request.post("/api/create_api_token", { form: { name: "mine", role: "admin" } });
  expect(refused.status()).toBe(403);
  await signOut(page);
});
