import { expect, test } from "@playwright/test";
import { admin, contributor, open, shot, signIn, signOut } from "./helpers";

test("an administrator adds a contributor", async ({ page }) => {
  await signIn(page, admin);
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Users" }).click();
  await expect(page.getByRole("heading", { name: "Users" })).toBeVisible();

  // Nothing filled in: both problems at once, each by its field and in
  // the focused summary.
  await page.getByRole("button", { name: "Add user" }).click();
  const summary = page.getByTestId("error-summary");
  await expect(summary).toBeFocused();
  await expect(summary).toContainText("2 things to fix");
  await expect(page.locator("#field-email-error")).toHaveText("Enter an email address.");
  await expect(page.locator("#field-password-error")).not.toBeEmpty();
  await expect(page.getByLabel("Email")).toHaveAttribute("aria-invalid", "true");
  await expect(page.getByLabel("Initial password")).toHaveAttribute("aria-invalid", "true");

  await page.getByLabel("Email").fill(contributor.email);
  await page.getByLabel("Role", { exact: true }).selectOption({ label: "Contributor" });
  await page.getByLabel("Initial password").fill(contributor.password);
  await page.getByRole("button", { name: "Add user" }).click();

  await expect(page.getByRole("status")).toHaveText(`${contributor.email} was added as contributor.`);
  await expect(page.getByLabel("Email")).toHaveValue("");
  const row = page.getByRole("row").filter({ hasText: contributor.email });
  await expect(row.getByRole("combobox", { name: `Role of ${contributor.email}` })).toHaveValue("contributor");
  await expect(row.getByRole("cell", { name: "Active" })).toBeVisible();
  await shot(page, "03-users");

  // The same email cannot be added twice; the error sits by the field.
  await page.getByLabel("Email").fill(contributor.email.toUpperCase());
  await page.getByLabel("Initial password").fill(contributor.password);
  await page.getByRole("button", { name: "Add user" }).click();
  await expect(page.locator("#field-email-error")).toHaveText("A user with this email already exists.");
  await expect(page.getByTestId("error-summary")).toContainText("A user with this email already exists.");

  // The last administrator cannot demote themselves.
  const me = page.getByRole("row").filter({ hasText: admin.email });
  await me.getByRole("combobox").selectOption("viewer");
  await me.getByRole("button", { name: "Change role" }).click();
  // (The Add user form still shows its own last error beside it.)
  await expect(page.getByRole("alert").filter({ hasText: "last active administrator" })).toBeVisible();
  await signOut(page);
});

test("a contributor sees no Admin pages and the server refuses them too", async ({ page }) => {
  await signIn(page, contributor);
  await expect(page.getByRole("banner").getByText("Contributor", { exact: true })).toBeVisible();
  const nav = page.getByRole("navigation", { name: "Main" });
  await expect(nav.getByRole("link", { name: "Overview" })).toBeVisible();
  await expect(nav.getByText("Admin")).toHaveCount(0);
  await expect(nav.getByRole("link", { name: "Users" })).toHaveCount(0);
  await shot(page, "03-contributor-overview");

  // Typing the address shows no user data.
  await open(page, "/admin/users");
  await expect(page.getByRole("heading", { name: "No access" })).toBeVisible();
  await expect(page.getByText(admin.email)).toHaveCount(0);
  await shot(page, "03-contributor-no-access");

  // Calling the server functions directly, with the contributor's session.
  const list = await page.request.post("/api/list_users");
  expect(list.status()).toBe(403);
  const create = await page.request.post("/api/create_user", {
    form: { email: "mallory@example.com", role: "admin", password: "mallory password" },
  });
  expect(create.status()).toBe(403);
  expect(await create.json()).toBe("Forbidden");
});
