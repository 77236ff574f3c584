// Keeps the parts of a page marked data-live up to date while tbot works: every two
// seconds the server renders them again, and the jobs a person has ticked stay ticked.
"use strict";

function refresh(region) {
  fetch(region.dataset.live, { credentials: "same-origin", cache: "no-store" })
    .then(function (response) {
      if (!response.ok || response.redirected) { throw new Error(response.status); }
      return response.text();
    })
    .then(function (html) {
      var ticked = Array.from(region.querySelectorAll("input[type=checkbox]:checked"))
        .map(function (box) { return box.value; });
      region.innerHTML = html;
      region.querySelectorAll("input[type=checkbox]").forEach(function (box) {
        box.checked = ticked.indexOf(box.value) >= 0;
      });
      region.dataset.refreshed = String(Date.now());
    })
    .catch(function () { region.dataset.stale = "true"; });
}

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-live]").forEach(function (region) {
    setInterval(function () { refresh(region); }, 2000);
  });
});
