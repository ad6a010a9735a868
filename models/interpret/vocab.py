"""Word classes that decide whether a candidate phrase reads as the name of a finding.

Radiology phrases are built from a few kinds of words: where (anatomy, laterality,
position), how much and when (size, severity, time course, certainty), generic frame nouns
("size", "contour", "appearance") and the finding itself ("effusion", "cirrhotic",
"calcified granuloma"). A label phrase must contain at least one word that is none of the
first kinds, and must not end on a modifier or an anatomical adjective: "left lung",
"no typical" and "no focal alveolar" are fragments, "small left pleural effusion" is a
name. These are general English and radiology word lists for any body region and modality,
not vocabulary collected from one data set.
"""

from __future__ import annotations

from collections.abc import Sequence


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words that never name a finding and end a phrase: function words, hedges ("consistent",
# "likely"), verbs of seeing ("noted", "demonstrated"), units, and the words of how a study was
# done and communicated (procedure, comparison, dictation): report boilerplate.
STOP_WORDS = _words(
    "a an the of and or in on at to for from by with as is are was were be been being this that "
    "these those there here it its which who whom whose also again has have had having noted seen "
    "demonstrated identified visualized visualised present shows show shown showing appears appear "
    "appearing within into upon than then so such any some each per both may can could would should "
    "will does do did s evidence finding findings cm mm ml patient study exam examination image "
    "images series redemonstrated measuring measures measure measured approximately about using via "
    "given we our compatible consistent likely probably possibly suggestive suggesting representing "
    "concerning if when while after before since because due over under between through throughout "
    "other more most less very only just still thus therefore might must seems seem suggest suggests "
    "represent represents reflect reflects reflecting remains remain they them their he she his her "
    "specifically further including includes include respectively reveal reveals revealed "
    "demonstrate demonstrates demonstrating developed radiograph radiographs radiography view views "
    "frontal comparison compared dated dictated discussed telephone phone dr md called notified "
    "paged recommend recommended recommendation correlation clinical clinically please report "
    "reported date time am pm"
)
LOCATION_MODIFIERS = _words(
    "left right bilateral bilaterally unilateral upper lower middle mid basilar basal apical lateral "
    "medial anterior posterior central peripheral inferior superior proximal distal dependent both "
    "side sided ventral dorsal cranial caudal deep superficial internal external ipsilateral "
    "contralateral retrocardiac perihilar paramediastinal subpleural subcarinal"
)
SEVERITY_MODIFIERS = _words(
    "small large tiny trace mild mildly moderate moderately severe severely minimal minimally minor "
    "marked markedly slight slightly extensive diffuse diffusely focal multifocal patchy scattered "
    "subtle prominent numerous multiple several single few many various borderline low high"
)
TIME_MODIFIERS = _words(
    "new old acute subacute chronic stable unchanged persistent persistently residual recent prior "
    "previous previously interval increased increasing decreased decreasing improved improving "
    "worsened worsening resolving resolved healed healing early late current currently again "
    "redemonstrated"
)
CERTAINTY_MODIFIERS = _words(
    "possible possibly probable probably likely suspected questionable definite definitive apparent "
    "typical atypical normal abnormal significant visible suspicious unremarkable otherwise overall "
    "essentially grossly relatively normally negative positive active inactive vague somewhat "
    "generally partially partly completely well"
)
ANATOMY_ADJECTIVES = _words(
    "pleural pulmonary alveolar cardiac cardio cardiopulmonary hilar mediastinal cardiomediastinal "
    "vascular thoracic renal hepatic coronary aortic osseous bony soft costophrenic interstitial "
    "airspace bronchial bronchovascular abdominal pelvic vertebral spinal cervical lumbar intra "
    "extra splenic pancreatic adrenal biliary colonic gastric esophageal pericardial diaphragmatic "
    "lobar segmental subsegmental parenchymal cortical"
)
ANATOMY_NOUNS = _words(
    "lung lungs lobe lobes base bases apex apices zone zones field fields region regions area areas "
    "segment segments hemithorax hemithoraces chest thorax heart mediastinum hilum hila pleura "
    "diaphragm hemidiaphragm hemidiaphragms spine vertebra vertebrae bone bones rib ribs clavicle "
    "soft tissue tissues abdomen pelvis liver spleen kidney kidneys gallbladder bowel colon pancreas "
    "adrenal adrenals bladder stomach esophagus aorta artery arteries vessel vessels vasculature "
    "airway airways trachea bronchi angle angles margin margins wall walls border borders surface "
    "body bodies"
)
GENERIC_NOUNS = _words(
    "size contour contours silhouette limits limit appearance structure structures change changes "
    "interval morphology configuration position level levels aspect aspects portion portions part "
    "parts finding findings process processes component components volume volumes status degree "
    "extent evidence signs sign diagnosis diagnoses differential consideration considerations etiology "
    "possibility"
)
MODIFIERS = LOCATION_MODIFIERS | SEVERITY_MODIFIERS | TIME_MODIFIERS | CERTAINTY_MODIFIERS
NOT_HEAD = MODIFIERS | ANATOMY_ADJECTIVES  # a phrase never ends on one of these
NOT_CONTENT = NOT_HEAD | ANATOMY_NOUNS | GENERIC_NOUNS  # these alone do not name a finding


def reads_as_name(words: Sequence[str]) -> bool:
    """True when the phrase ends on a head word and names something beyond where or how much."""
    if not words or words[-1] in NOT_HEAD:
        return False
    return any(w not in NOT_CONTENT for w in words)
