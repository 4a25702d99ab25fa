import { expect, test } from "@playwright/test";
import { contributor, open, shot, signIn, signOut } from "./helpers";

test("a contributor uploads a profiles CSV and reads the import report", async ({ page }) => {
  await signIn(page, contributor);
  await open(page, "/data/segments");
  await page.getByLabel("CSV file").setInputFiles({
    name: "people.csv",
    mimeType: "text/csv",
    buffer: Buffer.from("id,email,country,lifetime_value\nU1,uma@example.com,HU,900\nU2,only-two-columns\nU3,ulf@example.com,HU,950\n"),
  });
  await page.getByRole("button", { name: "Upload" }).click();
  await expect(page.getByText("Imported 2 of 3 rows; 1 rejected.")).toBeVisible();
  await expect(page.getByText("Line 3: expected 4 columns, found 2")).toBeVisible();
  await shot(page, "05-import-report");
});

test("a contributor creates a rule segment, sees the live count, then its members", async ({ page }) => {
  await signIn(page, contributor);
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Segments" }).click();
  await expect(page.getByRole("heading", { name: "Segments" })).toBeVisible();
  // The demo segments of the first start.
  await expect(page.getByRole("link", { name: "Hungarian customers" })).toBeVisible();
  await page.getByLabel("Search by name").fill("high");
  await expect(page.getByRole("link", { name: "High value" })).toBeVisible();
  await expect(page.getByRole("link", { name: "Hungarian customers" })).toHaveCount(0);
  await shot(page, "05-segments");

  await page.getByRole("link", { name: "New segment" }).click();
  await expect(page.getByRole("heading", { name: "New segment" })).toBeVisible();
  await page.getByLabel("Name").fill("Hungarian big spenders");
  await page.getByLabel("Field 1").selectOption("country");
  await page.getByLabel("Operator 1").selectOption("eq");
  await page.getByLabel("Value 1").fill("HU");
  await page.getByRole("button", { name: "Add condition" }).click();
  await page.getByLabel("Field 2").selectOption("lifetime_value");
  await page.getByLabel("Operator 2").selectOption("gt");
  await page.getByLabel("Value 2").fill("100");
  const status = page.getByRole("status").filter({ hasText: "profiles match" });
  await expect(status).toHaveText(/^[\d,]+ profiles match$/);
  const expected = (await status.textContent())!.split(" ")[0];
  await shot(page, "05-new-segment");
  const counts: string[] = [];
  page.on("request", (r) => {
    if (r.url().includes("/api/preview_rule")) counts.push(r.url());
  });
  await page.getByRole("button", { name: "Create segment" }).click();

  await expect(page.getByRole("heading", { name: "Hungarian big spenders" })).toBeVisible();
  await expect(page.getByTestId("member-count")).toHaveText(expected);
  await expect(page.getByText("country = HU AND lifetime_value > 100")).toBeVisible();
  await expect(page.getByRole("heading", { name: /^First \d+ members$/ })).toBeVisible();
  // Its page does not read every profile again to count the saved rule:
  // the refresh that stored its members counted them.
  await expect(status).toHaveText(`${expected} profiles matched at the last refresh`);
  expect(counts).toEqual([]);
  await shot(page, "05-segment-detail");
  // A changed rule is counted again, once, when typing pauses (each
  // count reads every profile), and the saved one is shown as saved.
  await page.getByLabel("Value 2").selectText();
  await page.getByLabel("Value 2").pressSequentially("100000000", { delay: 40 });
  await expect(status).toHaveText("0 profiles match");
  await page.waitForTimeout(600);
  expect(counts.length).toBe(1);
  await page.getByLabel("Value 2").fill("100");
  await expect(status).toHaveText(`${expected} profiles matched at the last refresh`);
});

test("a contributor imports a static segment from a list of ids", async ({ page }) => {
  await signIn(page, contributor);
  await open(page, "/data/segments");
  await page.getByLabel("Segment name").fill("Trade show leads");
  await page.getByLabel("Ids file").setInputFiles({
    name: "leads.csv",
    mimeType: "text/csv",
    buffer: Buffer.from("profile_id\nP0000001\nP0000002\n\"P0000003\"\nnot-a-profile\n"),
  });
  await page.getByRole("button", { name: "Import segment" }).click();
  const report = page.getByRole("status").filter({ hasText: "now has" });
  await expect(report).toContainText("Trade show leads now has 3 members (4 ids read).");
  await expect(report).toContainText("1 id is not a profile and was skipped: not-a-profile");
  await shot(page, "05-static-segment-import");
  // The list shows it at once; its page lists the members.
  const row = page.getByRole("row").filter({ hasText: "Trade show leads" });
  await expect(row).toContainText("Static list");
  await expect(row.getByRole("cell").nth(2)).toHaveText("3");
  await report.getByRole("link", { name: "Trade show leads" }).click();
  await expect(page.getByRole("heading", { name: "Trade show leads" })).toBeVisible();
  await expect(page.getByTestId("member-count")).toHaveText("3");
  await expect(page.getByRole("definition").filter({ hasText: "Imported from leads.csv" })).toBeVisible();
  await expect(page.getByRole("cell", { name: "P0000003" })).toBeVisible();
});

test("a segment saved with nothing filled in shows every problem at once", async ({ page }) => {
  await signIn(page, contributor);
  await open(page, "/data/segments/new");
  await page.getByRole("button", { name: "Create segment" }).click();
  const summary = page.getByTestId("error-summary");
  await expect(summary).toBeFocused();
  await expect(summary).toContainText("2 things to fix");
  await expect(page.locator("#segment-name-error")).toHaveText("A segment name has 1 to 100 characters.");
  await expect(page.locator("#segment-rule-error")).not.toBeEmpty();
  await expect(page.locator("#segment-name")).toHaveAttribute("aria-invalid", "true");
  // Each problem in the summary leads to its field.
  await summary.getByRole("link", { name: "A segment name has 1 to 100 characters." }).click();
  await expect(page.locator("#segment-name")).toBeFocused();
  await signOut(page);
});
