"""meshpkt.layers"""
