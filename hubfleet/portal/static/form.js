// Optional: shows only the log-in settings of the chosen method; without it every section is shown.
(function () {
  "use strict";
  var radios = document.querySelectorAll("input[name=auth_kind]");
  var sections = document.querySelectorAll("fieldset.kind");
  function update() {
    var chosen = document.querySelector("input[name=auth_kind]:checked");
    sections.forEach(function (section) {
      section.hidden = !chosen || section.dataset.kind !== chosen.value;
    });
  }
  radios.forEach(function (radio) { radio.addEventListener("change", update); });
  update();
})();
