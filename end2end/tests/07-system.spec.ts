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
