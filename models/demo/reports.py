"""Text written by the synthetic demo cohort (see `models.demo.cohort`): radiology
reports, the outcome definitions YAML and the truth document.

The reports must be realistic enough that a text encoder has to *read* them: each
finding has several phrasings, normal organs are described with negations ("No focal
hepatic lesion."), section order varies, and a modest rate of negated mentions of the
planted findings ("No evidence of cirrhosis.") keeps keyword matching from being a
perfect detector. Every positive finding stated here is also drawn in the study's image,
so the two modalities agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml

PLANTED = ("cirrhosis", "coronary_calcification", "spondylosis")
INCIDENTAL = (
    "renal_cyst",
    "gallstones",
    "pleural_effusion",
    "diverticulosis",
    "hepatic_cyst",
    "hiatal_hernia",
)

FINDING_DESCRIPTIONS = {  # for truth.json
    "cirrhosis": "shrunken, low-density, nodular liver with splenomegaly (+/- ascites)",
    "coronary_calcification": "bright (>400 HU) calcified spots in the coronary region",
    "spondylosis": "osteophytes at the vertebral margins; prevalence rises with age",
    "renal_cyst": "round near-water-density spot in one kidney",
    "gallstones": "dense stones in the gallbladder",
    "pleural_effusion": "fluid in the dependent lung base",
    "diverticulosis": "colonic diverticula (report only, not drawn)",
    "hepatic_cyst": "low-density liver spot (distractor for the liver concept)",
    "hiatal_hernia": "soft tissue and air above the hiatus",
}

# Words a correct name of each planted finding contains (the demo check reads labels with them).
FINDING_NAMES = {
    "cirrhosis": ("cirrho", "nodular liver", "nodular contour", "chronic liver disease", "varices"),
    "coronary_calcification": ("coronary",),
    "spondylosis": ("spondyl", "osteophyte", "degenerative"),
}


@dataclass(frozen=True)
class StudyFacts:
    """What one study shows; shared by the image painter and the report writer so the
    two modalities describe the same patient.

    `findings` holds names from PLANTED and INCIDENTAL; the side/size fields are only
    meaningful when the matching finding is present. `comparison` is the date
    (YYYY-MM-DD) of an earlier study of the same patient, if any.
    """

    findings: frozenset[str]
    ascites: bool = False
    renal_cyst_side: str = "left"
    renal_cyst_cm: float = 1.5
    hepatic_cyst_cm: float = 1.2
    effusion_side: str = "right"
    spleen_cm: float = 11.0
    contrast: bool = True
    comparison: str | None = None

    @classmethod
    def sample(cls, rng: np.random.Generator, findings: frozenset[str], ascites: bool,
               contrast: bool, comparison: str | None) -> StudyFacts:
        """Sides and sizes from the patient's own generator, so a repeat study shows the
        same cyst on the same side and the same spleen size."""
        cirr = "cirrhosis" in findings
        return cls(findings=findings, ascites=ascites,
                   renal_cyst_side=str(rng.choice(["left", "right"])),
                   renal_cyst_cm=round(float(rng.uniform(1.0, 4.0)), 1),
                   hepatic_cyst_cm=round(float(rng.uniform(0.8, 4.0)), 1),
                   effusion_side=str(rng.choice(["right", "left", "bilateral"])),
                   spleen_cm=round(float(rng.uniform(*((14.0, 18.0) if cirr else (9.0, 12.0)))), 1),
                   contrast=contrast, comparison=comparison)


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    """One phrasing, chosen by the study's own generator (deterministic per seed)."""
    return options[int(rng.integers(len(options)))]


def _header(f: StudyFacts, rng: np.random.Generator) -> list[str]:
    """EXAMINATION / INDICATION / TECHNIQUE / COMPARISON lines."""
    phase = "with intravenous contrast" if f.contrast else "without intravenous contrast"
    exam = _pick(rng, [
        f"EXAMINATION: CT abdomen and pelvis {phase}.",
        f"EXAMINATION: CT of the abdomen and pelvis {phase}.",
        f"EXAMINATION: CT ABDOMEN/PELVIS {'WITH' if f.contrast else 'WITHOUT'} CONTRAST.",
    ])
    lines = [exam]
    if rng.random() < 0.7:
        lines.append("INDICATION: " + _pick(rng, [
            "Abdominal pain.", "Weight loss.", "Follow-up.", "Nausea and vomiting.",
            "Elevated liver enzymes.", "Evaluate for mass.", "Flank pain.", "Anemia.",
        ]))
    if rng.random() < 0.4:
        lines.append("TECHNIQUE: Axial images were obtained with coronal and sagittal reformats.")
    if f.comparison:
        lines.append(f"COMPARISON: CT dated {f.comparison}.")
    elif rng.random() < 0.5:
        lines.append("COMPARISON: None.")
    return lines


def _chest(f: StudyFacts, rng: np.random.Generator) -> list[str]:
    """Lung bases, heart, coronary arteries and hiatus."""
    out: list[str] = []
    if "pleural_effusion" in f.findings:
        side = "bilateral" if f.effusion_side == "bilateral" else f.effusion_side
        out.append(_pick(rng, [
            f"Small {side} pleural effusion.",
            f"There is a small {side} pleural effusion with adjacent atelectasis.",
            f"Trace {side} pleural fluid.",
        ]))
    else:
        out.append(_pick(rng, [
            "The lung bases are clear.", "No pleural effusion.",
            "Visualized lung bases are clear without consolidation or effusion.",
            "Lung bases: Clear.",
        ]))
    out.append(_pick(rng, ["Heart size is normal.", "The heart is normal in size.",
                           "No pericardial effusion.", "Normal heart size."]))
    if "coronary_calcification" in f.findings:
        out.append(_pick(rng, [
            "Coronary artery calcifications are present.",
            "Atherosclerotic calcification of the coronary arteries.",
            "Dense coronary calcification, most pronounced in the left anterior descending artery.",
            "Extensive coronary artery calcification is noted.",
            "Calcified coronary atherosclerosis.",
        ]))
    elif rng.random() < 0.03:
        out.append("No coronary artery calcification.")
    if "hiatal_hernia" in f.findings:
        out.append(_pick(rng, ["Small hiatal hernia.", "Moderate sliding hiatal hernia.",
                               "There is a small hiatus hernia."]))
    return out


def _liver(f: StudyFacts, rng: np.random.Generator) -> list[str]:
    """Liver, portal hypertension stigmata, hepatic cyst, gallbladder."""
    out: list[str] = []
    if "cirrhosis" in f.findings:
        out.append(_pick(rng, [
            "Nodular contour of the liver consistent with cirrhosis.",
            "Cirrhotic liver morphology with splenomegaly.",
            "The liver is shrunken with a nodular surface and caudate lobe hypertrophy, "
            "compatible with cirrhosis.",
            "Heterogeneous, nodular hepatic parenchyma in keeping with chronic liver disease.",
            "Small, nodular liver compatible with cirrhosis.",
        ]))
        if rng.random() < 0.5:
            out.append(_pick(rng, [
                "Sequelae of portal hypertension including esophageal varices.",
                "Prominent upper abdominal and paraesophageal varices.",
                "Recanalized paraumbilical vein, consistent with portal hypertension.",
            ]))
        if f.ascites:
            out.append(_pick(rng, ["Small volume perihepatic ascites.",
                                   "Mild ascites.", "Small amount of ascites."]))
    else:
        out.append(_pick(rng, [
            "The liver is normal in size and contour without nodularity.",
            "No focal hepatic lesion.", "The liver enhances homogeneously.",
            "Unremarkable liver.", "The liver is normal in size.",
        ]))
        if rng.random() < 0.03:
            out.append("No evidence of cirrhosis.")
    if "hepatic_cyst" in f.findings:
        out.append(_pick(rng, [
            f"A {f.hepatic_cyst_cm:.1f} cm simple hepatic cyst in the right lobe.",
            f"Small hypodense hepatic lesion measuring {f.hepatic_cyst_cm:.1f} cm, likely a cyst.",
            "Subcentimeter hepatic hypodensity, too small to characterize, likely a cyst."
            if f.hepatic_cyst_cm < 1.0 else f"Hepatic cyst, {f.hepatic_cyst_cm:.1f} cm.",
        ]))
    if "gallstones" in f.findings:
        out.append(_pick(rng, ["Cholelithiasis without gallbladder wall thickening.",
                               "Several small gallstones.",
                               "Gallstones are present; no pericholecystic fluid."]))
    else:
        out.append(_pick(rng, ["The gallbladder is unremarkable.", "No cholelithiasis.",
                               "Gallbladder is normally distended without stones."]))
    return out


def _solid_organs(f: StudyFacts, rng: np.random.Generator) -> list[str]:
    """Spleen, pancreas, adrenals, kidneys."""
    if "cirrhosis" in f.findings:
        out = [_pick(rng, [f"The spleen is enlarged, measuring {f.spleen_cm:.1f} cm.",
                           f"Splenomegaly ({f.spleen_cm:.0f} cm).", "Enlarged spleen."])]
    else:
        out = [_pick(rng, ["The spleen is normal in size.", "Spleen unremarkable.",
                           f"Spleen measures {f.spleen_cm:.1f} cm, within normal limits."])]
    out.append(_pick(rng, ["The pancreas and adrenal glands are unremarkable.",
                           "Normal pancreas.", "No pancreatic ductal dilatation.",
                           "The adrenal glands are normal."]))
    if "renal_cyst" in f.findings:
        side = f.renal_cyst_side
        out.append(_pick(rng, [
            f"Simple cyst in the {side} kidney measuring {f.renal_cyst_cm:.1f} cm.",
            f"{f.renal_cyst_cm:.1f} cm hypodensity in the {side} kidney, likely a simple cyst.",
            f"Bosniak I cyst of the {side} kidney.",
        ]))
    out.append(_pick(rng, ["The kidneys enhance symmetrically without hydronephrosis.",
                           "No renal mass or hydronephrosis.", "No hydronephrosis.",
                           "No nephrolithiasis or hydronephrosis."]))
    return out


def _bowel_bones(f: StudyFacts, rng: np.random.Generator) -> list[str]:
    """Bowel, vessels, pelvis and the spine."""
    out: list[str] = []
    if "diverticulosis" in f.findings:
        out.append(_pick(rng, ["Sigmoid diverticulosis without evidence of diverticulitis.",
                               "Scattered colonic diverticula.",
                               "Colonic diverticulosis without inflammatory change."]))
    out.append(_pick(rng, ["No bowel obstruction.", "The appendix is normal.",
                           "No bowel wall thickening.", "Normal caliber small bowel."]))
    if rng.random() < 0.6:
        out.append(_pick(rng, ["No free fluid or free air.", "No lymphadenopathy.",
                               "The bladder is unremarkable.",
                               "Mild atherosclerotic calcification of the abdominal aorta.",
                               "The abdominal aorta is normal in caliber."]))
    if "spondylosis" in f.findings:
        out.append(_pick(rng, [
            "Multilevel degenerative changes of the spine.",
            "Spondylosis with osteophyte formation.",
            "Degenerative disc disease and marginal osteophytes of the lumbar spine.",
            "Multilevel spondylotic changes with anterior osteophytes.",
        ]))
    elif rng.random() < 0.03:
        out.append("No significant degenerative change of the spine.")
    out.append(_pick(rng, ["No aggressive osseous lesion.", "Osseous structures are unremarkable.",
                           "No acute fracture.", "No suspicious osseous lesion."]))
    return out


_IMPRESSION = {
    "cirrhosis": ["Cirrhosis with splenomegaly.", "Cirrhotic liver morphology.",
                  "Findings of chronic liver disease/cirrhosis with portal hypertension."],
    "coronary_calcification": ["Coronary artery calcification.",
                               "Coronary atherosclerosis."],
    "spondylosis": ["Degenerative changes of the spine.", "Multilevel spondylosis."],
    "renal_cyst": ["Simple renal cyst, no follow-up needed."],
    "gallstones": ["Cholelithiasis.", "Uncomplicated cholelithiasis."],
    "pleural_effusion": ["Small pleural effusion."],
    "diverticulosis": ["Diverticulosis."],
    "hepatic_cyst": ["Small hepatic cyst."],
    "hiatal_hernia": ["Hiatal hernia."],
}
_IMPRESSION_P = {"cirrhosis": 0.95, "coronary_calcification": 0.8, "spondylosis": 0.5}


def _impression(f: StudyFacts, rng: np.random.Generator) -> list[str]:
    """Positive findings, planted ones first (as a radiologist ranks relevance)."""
    items = [
        _pick(rng, _IMPRESSION[name])
        for name in (*PLANTED, *INCIDENTAL)
        if name in f.findings and rng.random() < _IMPRESSION_P.get(name, 0.4)
    ]
    if not items:
        items = [_pick(rng, ["No acute abdominal or pelvic abnormality.",
                             "No acute findings.", "Unremarkable CT of the abdomen and pelvis."])]
    return [f"{i}. {s}" for i, s in enumerate(items, 1)]


def write_report(facts: StudyFacts, rng: np.random.Generator) -> str:
    """Assemble a full report; sections after the chest are shuffled a little so that
    sentence position carries no information."""
    sections = [_chest(facts, rng), _liver(facts, rng), _solid_organs(facts, rng),
                _bowel_bones(facts, rng)]
    if rng.random() < 0.3:
        sections[1], sections[2] = sections[2], sections[1]
    if rng.random() < 0.2:
        sections.append(sections.pop(0))
    findings = " ".join(s for sec in sections for s in sec)
    parts = [*_header(facts, rng), "", "FINDINGS:", findings, "", "IMPRESSION:",
             *_impression(facts, rng)]
    return "\n".join(parts)


def truth_document(carriers: dict[str, list[str]], config: dict[str, Any]) -> dict[str, Any]:
    """truth.json: which studies carry each finding, which findings foretell which outcome,
    which finding is confounded (by age) and which are incidental; the demo check reads it."""
    findings = {n: {"description": FINDING_DESCRIPTIONS[n],
                    "modalities": ["report"] if n == "diverticulosis" else ["image", "report"],
                    "study_ids": sorted(carriers.get(n, []))} for n in (*PLANTED, *INCIDENTAL)}
    return {"findings": findings,
            "links": [{"finding": "cirrhosis", "outcome": "liver_cancer"},
                      {"finding": "coronary_calcification", "outcome": "heart_failure"}],
            "confounded": [{"finding": "spondylosis", "via": "age"}],
            "incidental": list(INCIDENTAL), "config": config}


def outcomes_yaml() -> str:
    """The OutcomeDefinitions YAML: two linked outcomes and appendicitis as a null outcome."""
    rows = [("liver_cancer", "Primary liver cancer", "C22"),
            ("heart_failure", "Heart failure", "I50"), ("appendicitis", "Appendicitis", "K35")]
    return yaml.safe_dump({"outcomes": [
        {"id": i, "name": n, "codes": [f"ICD10CM//{c}"], "window_years": 4, "exclude_prior": True}
        for i, n, c in rows]}, sort_keys=False)
