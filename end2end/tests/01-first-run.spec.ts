import { expect, test } from "@playwright/test";
import { admin, open, shot } from "./helpers";

test("a fresh installation asks for the first administrator, then never again", async ({ page }) => {
  // Every page leads to the setup page while nobody exists.
  await open(page, "/login");
  await expect(page).toHaveURL(/\/setup$/);
  await expect(page.getByRole("heading", { name: "Create the first administrator" })).toBeVisible();
  await shot(page, "01-setup");

  // Mismatched passwords are caught next to the field.
  await page.getByLabel("Email").fill(admin.email);
  await page.getByLabel("Password", { exact: true }).fill(admin.password);
  await page.getByLabel("Confirm password").fill("something else entirely");
  await page.getByRole("button", { name: "Create administrator" }).click();
  await expect(page.locator("#field-confirm_password-error")).toHaveText("The passwords do not match.");
  // And in the form's summary, which takes the focus.
  await expect(page.getByTestId("error-summary")).toBeFocused();
  await expect(page.getByTestId("error-summary")).toContainText("The passwords do not match.");

  await page.getByLabel("Confirm password").fill(admin.password);
  await page.getByRole("button", { name: "Create administrator" }).click();

  // Signed in as the new administrator.
  await expect(page.getByRole("heading", { name: "Overview" })).toBeVisible();
  await expect(page.getByTestId("signed-in-user")).toHaveText(admin.email);
  await expect(page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Users" })).toBeVisible();
  await shot(page, "01-overview-admin");

  // The setup page is gone for good.
  await open(page, "/setup");
  await expect(page).toHaveURL(/\/$/);
  const again = await page.request.post("/api/create_first_admin", {
    form: { email: "intruder@example.com", password: "intruder password", confirm_password: "intruder password" },
  });
  expect(again.status()).toBe(409);
});
