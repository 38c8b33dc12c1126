"""The access and portability export (RGT-1, RGT-6, RGT-9).

``exports.Exports`` streams it: ``held_data`` writes ChatPro's own data about the person,
``information`` what Art. 15(1) asks to be told besides, ``plugin_bridge`` each
organisation's part through its export plugin, and ``streaming`` the JSON and its chunks.
"""
