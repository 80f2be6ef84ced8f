// Offline behaviour of the Data Docs pages (inlined by sensor_platform/quality/data_docs.py):
// what Great Expectations does with jQuery and Bootstrap, in plain JavaScript.
(function () {
  function sections(show) {
    document.querySelectorAll(".hide-succeeded-validation-target-child").forEach(function (el) {
      if (el.parentElement) { el.parentElement.style.display = show ? "" : "none"; }
    });
    document.querySelectorAll(".hide-succeeded-validation-target").forEach(function (el) {
      el.style.display = show ? "" : "none";
    });
    document.querySelectorAll(".hide-succeeded-validations-column-section-target-child")
      .forEach(function (el) {
        var section = el.parentElement && el.parentElement.parentElement;
        if (!section) { return; }
        section.style.display = show ? "" : "none";
        if (section.id) {
          document.querySelectorAll('a[href$="' + section.id + '"]').forEach(function (a) {
            a.style.display = show ? "" : "none";
          });
        }
      });
  }
  window.showAllValidations = function () { sections(true); };
  window.hideSucceededValidations = function () { sections(false); };
  document.addEventListener("click", function (event) {
    var toggle = event.target.closest('[data-toggle="collapse"]');
    if (!toggle) { return; }
    var target = document.querySelector(toggle.getAttribute("href") || toggle.dataset.target);
    if (target) { event.preventDefault(); target.classList.toggle("show"); }
  });
  document.querySelectorAll('.btn-group-toggle label').forEach(function (label) {
    label.addEventListener("click", function () {
      label.parentElement.querySelectorAll("label").forEach(function (l) {
        l.classList.toggle("active", l === label);
      });
    });
  });
})();
