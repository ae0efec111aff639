"""Topic registry: upstream topic key -> (English name, Chinese name).

Upstream keys are whatever the digest blog uses as a post title / tag: some English ("3DGS", "Talking Head
Generation"), some Chinese ("医学图像", "元宇宙/虚拟人"), some mixed ("医学影像/Breast Ultrasound"). File names
and URLs mangle them ("元宇宙_虚拟人", "vision-transformer"), so lookups ignore case, spaces, "_", "-" and "/".
"""

from __future__ import annotations

import re
import unicodedata
import zlib

# key -> (English, Chinese). Keys are written as upstream writes them; lookups go through normalize_key().
_TOPICS: dict[str, tuple[str, str]] = {
    "3DGS": ("3D Gaussian Splatting", "3D高斯泼溅"),
    "NeRF": ("NeRF", "神经辐射场"),
    "Diffusion Models": ("Diffusion Models", "扩散模型"),
    "Talking Head Generation": ("Talking Head Generation", "说话人头像生成"),
    "元宇宙/虚拟人": ("Metaverse / Virtual Humans", "元宇宙/虚拟人"),
    "医学图像": ("Medical Imaging", "医学图像"),
    "医学影像/Breast Ultrasound": ("Medical Imaging / Breast Ultrasound", "医学影像/乳腺超声"),
    "牙齿修复": ("Dental Restoration", "牙齿修复"),
    "Vision Transformer": ("Vision Transformer", "视觉Transformer"),
    "LLM": ("Large Language Models", "大语言模型"),
    "GAN": ("GAN", "生成对抗网络"),
    "3D reconstruction": ("3D Reconstruction", "三维重建"),
    "Agent": ("Agents", "智能体"),
    "检测/分割": ("Detection / Segmentation", "检测/分割"),
    "视频理解": ("Video Understanding", "视频理解"),
    "无监督/半监督/对比学习": ("Unsupervised / Semi-supervised / Contrastive Learning", "无监督/半监督/对比学习"),
    "Few-Shot": ("Few-Shot Learning", "小样本学习"),
    "I2I Translation": ("Image-to-Image Translation", "图像到图像翻译"),
    "人脸相关": ("Face Analysis", "人脸相关"),
    "TTS": ("Text-to-Speech", "语音合成"),
    "Speech": ("Speech", "语音"),
    "音频": ("Audio", "音频"),
    "OCR": ("OCR", "文字识别"),
    "MMT": ("Multimodal Translation", "多模态翻译"),
    "多模态": ("Multimodal Learning", "多模态"),
    "R1_Reasoning": ("R1-style Reasoning", "R1推理"),
    "Text-to-Motion": ("Text-to-Motion", "文本生成动作"),
    "Image Generation": ("Image Generation", "图像生成"),
    "视频生成": ("Video Generation", "视频生成"),
    "超分辨率": ("Super-Resolution", "超分辨率"),
    "图像恢复": ("Image Restoration", "图像恢复"),
    "自动驾驶": ("Autonomous Driving", "自动驾驶"),
    "遥感": ("Remote Sensing", "遥感"),
    "强化学习": ("Reinforcement Learning", "强化学习"),
    "Interactive": ("Interactive Systems", "交互"),
    "Zero-Shot": ("Zero-Shot Learning", "零样本学习"),
    "Face Swapping": ("Face Swapping", "人脸交换"),
    "Domain Adaptation": ("Domain Adaptation", "域适应"),
    "检测/分割/跟踪": ("Detection / Segmentation / Tracking", "检测/分割/跟踪"),
}

# Separators that file names and URL slugs substitute for each other ("元宇宙/虚拟人" -> "元宇宙_虚拟人").
_SEPARATORS = re.compile(r"[\s_\-/]+")
_SLUG = re.compile(r"^[a-z0-9]+(?:[-_][a-z0-9]+)+$")


def normalize_key(key: str) -> str:
    """Lookup form of a key: NFKC (full-width letters), casefolded, separators removed."""
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", key).casefold())


_INDEX: dict[str, tuple[str, str]] = {normalize_key(k): v for k, v in _TOPICS.items()}


def _fallback(key: str) -> str:
    """Readable name for an unknown key: slugs are title-cased ("point-cloud" -> "Point Cloud")."""
    text = " ".join(key.split())
    if _SLUG.match(text):
        return " ".join(part.capitalize() for part in re.split(r"[-_]", text))
    return text


def topic_names(key: str) -> tuple[str, str]:
    """(English name, Chinese name) for an upstream topic key; unknown keys fall back to the key itself."""
    found = _INDEX.get(normalize_key(key))
    if found:
        return found
    name = _fallback(key)
    return (name, name)


def topic_slug(key: str) -> str:
    """Stable ASCII anchor id for a topic, from its English name ("元宇宙/虚拟人" -> "metaverse-virtual-humans");
    a key with no ASCII name gets a checksum ("topic-1a2b3c4d") so email links and archive anchors agree."""
    ascii_name = unicodedata.normalize("NFKD", topic_names(key)[0]).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.casefold()).strip("-")
    return slug or f"topic-{zlib.crc32(normalize_key(key).encode()):08x}"


def known_topics() -> dict[str, tuple[str, str]]:
    """A copy of the registry (for documentation and preference pages)."""
    return dict(_TOPICS)


_KEY_BY_NAME: dict[str, str] = {}
for _key, (_en, _zh) in _TOPICS.items():
    for _name in (_key, _en, _zh):
        _KEY_BY_NAME.setdefault(normalize_key(_name), _key)


def canonical_topic(name: str) -> str:
    """The upstream key for a topic written any known way ("3d gaussian splatting", "3dgs" -> "3DGS")."""
    return _KEY_BY_NAME.get(normalize_key(name), " ".join(name.split()))
