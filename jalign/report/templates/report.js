// Filters of the jalign data report: stage, category, outcome and a text search. They only hide and show
// the cards already on the page (no data is read or inserted here), and keep their state in the URL
// fragment (#stage=decide&outcome=dropped), so a filtered view can be linked; sections with no match
// step aside while a filter is set. Without JavaScript the form stays hidden and every card shows.
"use strict";
(function () {
  var form = document.getElementById("filters");
  if (!form) { return; }
  var fields = {
    stage: document.getElementById("f-stage"),
    category: document.getElementById("f-category"),
    outcome: document.getElementById("f-outcome"),
    text: document.getElementById("f-text")
  };
  var count = document.getElementById("f-count");
  var cards = Array.prototype.slice.call(document.querySelectorAll("article.card"));
  var sections = Array.prototype.slice.call(document.querySelectorAll("section.section"));

  function matches(card, want) {
    if (want.stage && card.dataset.stage !== want.stage) { return false; }
    if (want.category && card.dataset.category.split("|").indexOf(want.category) < 0) { return false; }
    if (want.outcome && card.dataset.outcome !== want.outcome) { return false; }
    if (want.text && card.textContent.toLowerCase().indexOf(want.text) < 0) { return false; }
    return true;
  }

  function current() {
    return {
      stage: fields.stage.value,
      category: fields.category.value,
      outcome: fields.outcome.value,
      text: fields.text.value.trim().toLowerCase()
    };
  }

  function remember(want) {
    var parts = [];
    ["stage", "category", "outcome"].forEach(function (key) {
      if (want[key]) { parts.push(key + "=" + encodeURIComponent(want[key])); }
    });
    try {
      history.replaceState(null, "", parts.length ? "#" + parts.join("&") : location.pathname);
    } catch (e) { /* some browsers refuse replaceState on file:// pages; the filters still work */ }
  }

  function apply(save) {
    var want = current();
    var shown = 0;
    cards.forEach(function (card) {
      var ok = matches(card, want);
      card.hidden = !ok;
      if (ok) { shown += 1; }
    });
    // A section with no matching example steps aside while a filter is set (its tables included), so
    // the matches are not below screens of other sections' summaries.
    var active = Boolean(want.stage || want.category || want.outcome || want.text);
    sections.forEach(function (section) {
      var visible = section.querySelectorAll("article.card:not([hidden])").length;
      section.hidden = active && visible === 0;
    });
    count.textContent = shown + " of " + cards.length + " examples shown";
    if (save) { remember(want); }
  }

  function restore() {
    location.hash.replace(/^#/, "").split("&").forEach(function (part) {
      var eq = part.indexOf("=");
      if (eq < 0) { return; }
      var key = part.slice(0, eq);
      var value;
      try { value = decodeURIComponent(part.slice(eq + 1)); } catch (e) { return; }
      var select = fields[key];
      if (select && select.tagName === "SELECT" &&
          Array.prototype.some.call(select.options, function (o) { return o.value === value; })) {
        select.value = value;
      }
    });
  }

  restore();
  form.hidden = false;
  form.addEventListener("change", function () { apply(true); });
  form.addEventListener("input", function () { apply(true); });
  form.addEventListener("submit", function (event) { event.preventDefault(); });
  apply(false);
  document.body.setAttribute("data-filters", "ready");
}());
