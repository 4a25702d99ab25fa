import { expect, test, type Page } from "@playwright/test";
import { admin, firstLink, open, sandboxURL, signedInRoutes, signIn } from "./helpers";

// Every page opened by its address (a reload, a bookmark, a new tab) must
// hydrate: a page that looks right but whose wasm panicked is dead to the
// user. Each route is loaded ten times, and any console error, page error
// or missing hydration fails the test. The form pages are then used after
// a direct load, the way a user who reloads them would.

const LOADS = 10;

/** Records console errors and uncaught page errors; `expected` are
 * console messages the test provokes on purpose (a form saved empty). */
function watch(page: Page, expected: RegExp[] = []): string[] {
  const problems: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error" && !expected.some((e) => e.test(m.text()))) problems.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  return problems;
}

async function contactListCalls(page: Page): Promise<number> {
  const log = (await (await page.request.get(`${sandboxURL}/_sandbox/requests`)).json()) as {
    requests: { method: string; path: string }[];
  };
  return log.requests.filter((r) => r.method === "GET" && /contact_lists|contact_custom_fields/.test(r.path)).length;
}

test("every route loaded directly ten times hydrates with no error", async ({ page }) => {
  test.setTimeout(300_000);
  await signIn(page, admin);
  const routes = await signedInRoutes(page);
  const problems = watch(page);
  const callsBefore = await contactListCalls(page);
  for (const route of routes) {
    for (let i = 0; i < LOADS; i++) {
      await page.goto(route);
      await page.locator("body[data-hydrated]").waitFor({ timeout: 15_000 });
      expect(problems, `${route}, load ${i + 1}`).toEqual([]);
    }
  }
  // The form pages ask Constant Contact for the account's lists and custom
  // fields: twenty loads of them make one request of each, not twenty.
  expect(await contactListCalls(page) - callsBefore).toBeLessThanOrEqual(2);

  // Signed out, the sign-in page hydrates too.
  await page.context().clearCookies();
  for (let i = 0; i < LOADS; i++) {
    await page.goto("/login");
    await page.locator("body[data-hydrated]").waitFor({ timeout: 15_000 });
  }
  expect(problems).toEqual([]);
});

// The page's wasm modules are fetched and compiled from the document's
// head (`__wasm_early`), and the start-up script and the split loader
// take those: each module is fetched once. If an early compile fails
// (here: a module's first response is not wasm), the module is fetched
// and compiled again the usual way and the page still hydrates.
test("a direct load fetches each wasm module once, and recovers from a failed early compile", async ({ page }) => {
  const fetched = new Map<string, number>();
  page.on("request", (r) => {
    const path = new URL(r.url()).pathname;
    if (path.endsWith(".wasm")) fetched.set(path, (fetched.get(path) ?? 0) + 1);
  });
  const counts = () => [...fetched.values()];
  const seen = () => JSON.stringify([...fetched]);
  // Signed out: the sign-in page needs the main module only.
  await open(page, "/login");
  expect(counts(), seen()).toEqual([1]);
  await signIn(page, admin);
  for (const route of ["/data/exports", "/admin/users"]) {
    fetched.clear();
    await open(page, route);
    // The main module, its page group's and the chunks it shares with
    // other groups: each once.
    expect(counts().length, `${route}: ${seen()}`).toBeGreaterThanOrEqual(3);
    expect(counts(), `${route}: ${seen()}`).toEqual(counts().map(() => 1));
  }

  const problems = watch(page);
  const broken = new Set<string>();
  await page.route(/\.wasm$/, async (route) => {
    const path = new URL(route.request().url()).pathname;
    if (broken.has(path)) return route.continue();
    broken.add(path);
    await route.fulfill({ status: 200, contentType: "application/wasm", body: "not wasm" });
  });
  fetched.clear();
  await open(page, "/data/segments");
  // Every module failed once and was fetched again.
  expect(counts().length, seen()).toBeGreaterThanOrEqual(3);
  expect(counts(), seen()).toEqual(counts().map(() => 2));
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Exports" }).click();
  await expect(page.getByRole("heading", { name: "Exports", exact: true })).toBeVisible();
  expect(problems).toEqual([]);
});

test("forms opened by their address work", async ({ page }) => {
  // Saving the empty form is refused (422), on purpose.
  const problems = watch(page, [/status of 422/]);
  await signIn(page, admin);

  // Add destination, reloaded: ticking a segment counts it, Add attribute adds a row.
  await open(page, "/data/exports/new");
  await page.reload();
  await page.locator("body[data-hydrated]").waitFor();
  const count = page.getByTestId("export-count");
  await expect(count).toHaveText(/^0 profiles selected/);
  await page.getByRole("checkbox").first().check();
  await expect(count).not.toHaveText(/^0 profiles selected/);
  await expect(page.getByTestId("attribute-row")).toHaveCount(0);
  await page.getByRole("button", { name: "Add attribute" }).click();
  await expect(page.getByTestId("attribute-row")).toHaveCount(1);
  await expect(page.getByLabel("Constant Contact list")).toBeVisible();

  // Saved empty: every problem at once, announced and focused, each next
  // to its field too.
  await open(page, "/data/exports/new");
  await page.getByRole("button", { name: "Save" }).click();
  const summary = page.getByTestId("error-summary");
  await expect(summary).toHaveAttribute("role", "alert");
  await expect(summary).toBeFocused();
  await expect(summary.getByRole("listitem")).toHaveCount(3);
  await expect(page.getByLabel("Export name")).toHaveAttribute("aria-invalid", "true");
  await expect(page.getByLabel("List ID")).toHaveAttribute("aria-invalid", "true");
  await expect(page.locator("#export-segments-error")).toHaveText("Choose at least one segment.");
  await summary.getByRole("link", { name: /name of 1 to 100/ }).click();
  await expect(page.getByLabel("Export name")).toBeFocused();

  // Edit export, reloaded: its saved mapping is shown and can grow.
  const exportPage = await firstLink(page, "/data/exports", /^\/data\/exports\/\d+$/);
  await open(page, `${exportPage}/edit`);
  await page.reload();
  await page.locator("body[data-hydrated]").waitFor();
  const rows = await page.getByTestId("attribute-row").count();
  await page.getByRole("button", { name: "Add attribute" }).click();
  await expect(page.getByTestId("attribute-row")).toHaveCount(rows + 1);

  // New segment, reloaded: conditions can be added and the count follows.
  await open(page, "/data/segments/new");
  await page.reload();
  await page.locator("body[data-hydrated]").waitFor();
  await expect(page.getByRole("status").filter({ hasText: "Choose a field for every condition" })).toBeVisible();
  await page.getByRole("button", { name: "Add condition" }).click();
  await expect(page.getByLabel("Field 2")).toBeVisible();

  expect(problems).toEqual([]);
});

test("at 390 px no page scrolls sideways and the navigation folds", async ({ page }) => {
  await page.setViewportSize({ width: 390, height: 844 });
  await signIn(page, admin);
  for (const route of await signedInRoutes(page)) {
    await open(page, route);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    expect(overflow, `${route} scrolls sideways by ${overflow} px`).toBeLessThanOrEqual(0);
    await expect(page.getByRole("button", { name: "Sign out" })).toBeInViewport();
  }
  // The navigation is behind the Menu button, and opens.
  await open(page, "/");
  await expect(page.getByRole("navigation", { name: "Main" })).toBeHidden();
  await page.getByRole("button", { name: "Menu" }).click();
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Exports" }).click();
  await expect(page.getByRole("heading", { name: "Exports", exact: true })).toBeVisible();
  await expect(page.getByRole("navigation", { name: "Main" })).toBeHidden();
});

test("a run where no profile could be sent fails, says why, and pages through its errors", async ({ page }) => {
  test.setTimeout(120_000);
  await signIn(page, admin);
  // 120 profiles without an email address, in a segment of their own.
  const rows = ["id,email,tag", ...Array.from({ length: 120 }, (_, i) => `NOMAIL${String(i).padStart(3, "0")},,pager`)];
  const uploaded = await page.request.post("/data/import/profiles?id_column=id", {
    headers: { "content-type": "text/csv", origin: new URL(page.url()).origin },
    data: rows.join("\n") + "\n",
  });
  expect(uploaded.status(), await uploaded.text()).toBe(200);
  const segment = await page.request.post("/api/create_segment", {
    form: {
      name: "No email at all",
      description: "",
      rule: JSON.stringify({ match: "all", conditions: [{ field: "tag", op: "eq", value: "pager" }] }),
    },
  });
  expect(segment.status(), await segment.text()).toBe(200);
  const segmentId = (await segment.json()).id as number;
  const form = await (await page.request.post("/api/get_export_form")).json();
  const connectionId = form.connections[0].id as number;
  const lists = await (await page.request.post("/api/connection_lists", { form: { connection_id: String(connectionId) } })).json();
  const saved = await page.request.post("/api/save_export", {
    form: {
      export: JSON.stringify({
        name: "Nobody to send",
        connection_id: connectionId,
        list_id: lists[0].list_id,
        mapping: [{ source: "email", target: "email" }],
        segment_ids: [segmentId],
        on_schedule: false,
        remove_left: false,
        removal_limit_pct: 20,
      }),
    },
  });
  expect(saved.status(), await saved.text()).toBe(200);
  const exportId = await saved.json();

  // The form warns before anyone saves such an export.
  await open(page, `/data/exports/${exportId}/edit`);
  await expect(page.getByTestId("email-fill-warning")).toContainText("None of these 120 profiles has a value in email");

  const run = await page.request.post("/api/run_export", { form: { id: String(exportId), mode: "incremental" } });
  expect(run.status(), await run.text()).toBe(200);
  const runId = await run.json();
  await open(page, `/runs/${runId}`);
  await expect(page.getByTestId("run-status").first()).toHaveText("Failed", { timeout: 60_000 });
  await expect(page.getByTestId("run-message")).toContainText("None of the 120 profiles could be sent: 120 had no email address");

  // 120 errors, 50 a page: the pager moves through all three.
  await expect(page.getByRole("heading", { name: "Contact errors (120)" })).toBeVisible();
  await expect(page.getByText("Page 1 of 3")).toBeVisible();
  await expect(page.getByRole("button", { name: "Previous" })).toBeDisabled();
  await page.getByRole("button", { name: "Next" }).click();
  await expect(page.getByText("Page 2 of 3")).toBeVisible();
  await page.getByRole("button", { name: "Next" }).click();
  await expect(page.getByText("Page 3 of 3")).toBeVisible();
  await expect(page.getByRole("button", { name: "Next" })).toBeDisabled();
  await expect(page.getByTestId("run-errors").locator("tbody tr")).toHaveCount(20);
  await page.getByRole("button", { name: "Previous" }).click();
  await expect(page.getByText("Page 2 of 3")).toBeVisible();
  // The page's text is the page's, not its source.
  await expect(page.locator("main")).not.toContainText("page_no");
});

test("sign in with nothing filled in shows both problems at once", async ({ page }) => {
  await open(page, "/login");
  await page.getByRole("button", { name: "Sign in" }).click();
  const summary = page.getByTestId("error-summary");
  await expect(summary).toBeFocused();
  await expect(summary.getByRole("listitem")).toHaveText(["Enter your email address.", "Enter your password."]);
  await expect(page.getByLabel("Email")).toHaveAttribute("aria-invalid", "true");
  await expect(page.getByLabel("Password")).toHaveAttribute("aria-invalid", "true");
});
