import { expect, test } from "@playwright/test";
import { admin, open, shot, signIn, signOut } from "./helpers";

test("a wrong password gets one clear message and no session", async ({ page }) => {
  await open(page, "/login");
  await page.getByLabel("Email").fill(admin.email);
  await page.getByLabel("Password").fill("not the password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("alert")).toHaveText("The email or password is not correct.");
  await shot(page, "02-wrong-password");

  // An unknown email reads exactly the same.
  await page.getByLabel("Email").fill("nobody@example.com");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("alert")).toHaveText("The email or password is not correct.");

  await open(page, "/");
  await expect(page).toHaveURL(/\/login$/);
});

test("an administrator signs in and out", async ({ page }) => {
  await signIn(page, admin);
  await expect(page.getByTestId("signed-in-user")).toHaveText(admin.email);
  await signOut(page);
  // Signed out for real: protected pages send us back to sign in.
  await open(page, "/admin/users");
  await expect(page).toHaveURL(/\/login$/);
});
