"""The access and portability export (RGT-1, RGT-6, RGT-9)."""
