import { expect, test } from "@playwright/test";
import { admin, contributor, open, shot, signIn, signOut } from "./helpers";

const name = "Newsletter account";

test("an administrator adds a Constant Contact connection through its sign-in page", async ({ page }) => {
  await signIn(page, admin);
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Connections" }).click();
  await expect(page.getByRole("heading", { name: "Connections" })).toBeVisible();
  await expect(page.getByText("No connections yet.")).toBeVisible();

  await page.getByRole("link", { name: "Add connection" }).click();
  await page.getByRole("list", { name: "Connection types" }).getByRole("link", { name: /Constant Contact/ }).click();
  await expect(page.getByRole("heading", { name: "Add a Constant Contact connection" })).toBeVisible();

  await page.getByLabel("Display name").fill(name);
  await page.getByLabel("Administrators and contributors").check();
  // Without agreement there is no way on.
  await expect(page.getByRole("button", { name: "Connect" })).toBeDisabled();
  await page.getByLabel("I agree").check();
  await page.getByRole("button", { name: "Connect" }).click();
  await shot(page, "04-connection-form");

  await page.getByRole("button", { name: "Authenticate with Constant Contact" }).click();
  // Constant Contact's (the sandbox's) sign-in and consent page.
  await expect(page.getByRole("heading", { name: "Sign in and allow access" })).toBeVisible();
  await page.getByLabel("Username").fill("demo@example.com");
  await page.getByLabel("Password").fill("demo-password");
  await page.getByRole("button", { name: "Allow" }).click();

  // Back on the form, authorized, with the values kept.
  await expect(page.getByText("✓ Authorized with Constant Contact")).toBeVisible();
  await page.locator("body[data-hydrated]").waitFor();
  await expect(page.getByLabel("Display name")).toHaveValue(name);
  await expect(page.getByLabel("Administrators and contributors")).toBeChecked();
  await expect(page.getByRole("button", { name: "Save" })).toBeDisabled();
  await page.getByRole("button", { name: "Add yourself as export user" }).click();
  await expect(page.getByText(`Export user: ${admin.email}`)).toBeVisible();
  await shot(page, "04-connection-form-authorized");
  await page.getByRole("button", { name: "Save" }).click();

  await expect(page.getByRole("heading", { name: "Connections" })).toBeVisible();
  const row = page.getByRole("row").filter({ hasText: name });
  await expect(row.getByText("Authorized", { exact: true })).toBeVisible();
  await expect(row.getByText("Administrators and contributors")).toBeVisible();
  await expect(row.getByText(admin.email)).toBeVisible();
  await row.getByRole("button", { name: `Test ${name}` }).click();
  await expect(page.getByRole("status")).toHaveText("Connected. The account has 0 lists.");
  await shot(page, "04-connections-list");

  // The audit log tells who did it.
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Audit log" }).click();
  await expect(page.getByRole("row").filter({ hasText: "Connection added" })).toContainText(admin.email);
  await signOut(page);
});

test("a contributor cannot open Add connection, in the browser or at the server", async ({ page }) => {
  await signIn(page, contributor);
  await expect(page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Connections" })).toHaveCount(0);
  await open(page, "/admin/connections/new/constant-contact");
  await expect(page.getByRole("heading", { name: "No access" })).toBeVisible();
  const refused = await page.request.post("/api/start_connect", {
    form: { display_name: "Sneaky", usable_by: "admins", agree: "on" },
  });
  expect(refused.status()).toBe(403);
  const usable = await page.request.post("/api/usable_connections");
  expect(await usable.json()).toEqual([expect.objectContaining({ display_name: name, kind: "Constant Contact" })]);
  await signOut(page);
});

test("removing a connection asks first, then it is gone", async ({ page }) => {
  await signIn(page, admin);
  await open(page, "/admin/connections");
  const row = page.getByRole("row").filter({ hasText: name });
  await row.getByRole("button", { name: `Remove ${name}` }).click();
  const dialog = page.getByRole("alertdialog", { name: `Remove ${name}?` });
  await expect(dialog).toBeVisible();
  await shot(page, "04-remove-confirm");
  await dialog.getByRole("button", { name: "Remove connection" }).click();
  await expect(page.getByRole("status")).toContainText(`${name} was removed and its access at Constant Contact revoked.`);
  await expect(page.getByRole("row").filter({ hasText: name })).toHaveCount(0);
  await expect(page.getByText("No connections yet.")).toBeVisible();
});
