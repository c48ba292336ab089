"""On-device image AI: the one preprocessing shared by training and inference, the pneumonia
classifier with class-activation saliency, the fetal-head segmenter with its ellipse fit and
head circumference, the intended-use check, and DICOM SEG/SR export of the results."""
