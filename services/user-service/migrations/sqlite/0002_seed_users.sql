-- Seed users, inserted once: a migration runs only on the first start against a database.
-- New users continue after the seeds (AUTOINCREMENT follows the largest id).
INSERT INTO users (id, name, email, created_at, updated_at) VALUES
    (121, 'Alan Turing',  'alan.turing@example.org',  '2024-01-01T00:00:00Z', '2024-01-01T00:00:00Z'),
    (122, 'Grace Hopper', 'grace.hopper@example.org', '2024-01-01T00:00:00Z', '2024-01-01T00:00:00Z'),
    (123, 'Ada Lovelace', 'ada.lovelace@example.org', '2024-01-01T00:00:00Z', '2024-01-01T00:00:00Z');
