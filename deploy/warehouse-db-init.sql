-- First start of the compose warehouse server: the demo shop database lives beside the
-- warehouse (point SHOP_DB_URL at your own shop database instead).
create database shop;
